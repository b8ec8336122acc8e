package hooks

import (
	"fmt"
	"strings"
)

// windowsProgramError says why Windows would not run prog as an exec step's
// program, or returns nil. It is plain string work, so that it is tested on
// every operating system; it is used on Windows only.
//
// Windows starts a program (CreateProcess) only when it is a .exe or .com
// file. It also starts a .bat or .cmd file, through cmd.exe, which reads the
// arguments as commands (& | > % …): that breaks the rule that each argument
// reaches the program as one literal string, so batch files are refused.
// Other kinds of script (PATHEXT's .vbs, .js, .ps1 …) need their interpreter,
// named as the program.
func windowsProgramError(prog string) error {
	base := prog[strings.LastIndexAny(prog, `/\`)+1:]
	ext := ""
	if i := strings.LastIndexByte(base, '.'); i >= 0 {
		ext = strings.ToLower(base[i:])
	}
	switch ext {
	case ".exe", ".com":
		return nil
	case ".bat", ".cmd":
		return fmt.Errorf("exec: program %s is a batch file, which Windows runs through cmd.exe, and cmd.exe reads its arguments as commands; exec steps pass each argument literally: use a .exe program", prog)
	case "":
		return fmt.Errorf("exec: program %s has no extension: Windows runs only .exe and .com files as programs", prog)
	default:
		return fmt.Errorf("exec: program %s is not a program Windows runs (%s): Windows runs only .exe and .com files; for a script, give its interpreter's .exe as the program and the script as an argument", prog, ext)
	}
}
