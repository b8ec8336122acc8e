// Package wire is Extron SIS (Simple Instruction Set) over Telnet, for both
// of its ends: the driver (drivers/extron) and the simulator
// (drivers/extron/extronsim).
//
// SIS is a terse ASCII protocol: the host sends commands with no line end
// ("1*3!" ties input 1 to output 3; "3%" asks which input output 3 shows;
// extended commands run from Esc to CR), and the device answers each with one
// line ending in CR LF ("Out03 In01 All", "01", or an error code such as
// "E01"). On a Telnet connection (TCP port 23) the device first sends a
// copyright banner and, when password protected, a "Password:" prompt. Ports
// are numbered from 1 on the wire, as on the panel. The package has three
// layers:
//
//   - framing: NewTelnetReader strips Telnet negotiation; SplitReplies (the
//     device's lines, and its unterminated password prompt) and
//     SplitCommands (the host's commands, delimited the way a device does)
//     are bufio.SplitFuncs, every size bounded (MaxLine, MaxCommand);
//   - messages: ParseCommand and Command.Bytes (Tie, ReadTie, Info, ReadName,
//     QuickTie, SetVerbose, …) and ParseReply and Reply.Line (TieReply,
//     Number, InfoReply, ErrorCode, PasswordPrompt, LoginReply, Text, …)
//     round-trip;
//   - transport: Conn reads lines and writes commands over any
//     io.ReadWriteCloser.
package wire
