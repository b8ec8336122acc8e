package hooks

import (
	"strings"
	"testing"
)

func TestWindowsProgramError(t *testing.T) {
	for _, ok := range []string{
		`C:\Program Files\Rec\recctl.exe`,
		`C:\Tools\LEGACY.COM`,
		`\\server\share\tools\switch.Exe`,
		`C:\dir.v2\prog.exe`,
	} {
		if err := windowsProgramError(ok); err != nil {
			t.Errorf("%s: %v, want nil", ok, err)
		}
	}
	for _, tc := range []struct{ prog, want string }{
		{`C:\scripts\takeover.bat`, "batch file"},
		{`C:\scripts\takeover.CMD`, "batch file"},
		{`C:\Tools\recctl`, "no extension"},
		{`C:\dir.v2\recctl`, "no extension"},
		{`C:\scripts\takeover.ps1`, "(.ps1)"},
		{`C:\scripts\takeover.vbs`, "interpreter"},
	} {
		err := windowsProgramError(tc.prog)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.prog) {
			t.Errorf("%s: %v, want an error naming it and saying %q", tc.prog, err, tc.want)
		}
	}
}
