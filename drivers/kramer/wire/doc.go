// Package wire is Kramer Protocol 3000, for both of its ends: the driver
// (drivers/kramer) and the simulator (drivers/kramer/kramersim).
//
// Protocol 3000 is a line protocol over TCP port 5000. A controller sends
// commands that start with '#' and end with CR ("#ROUTE 1,3,7\r"); the
// device answers with lines that start with '~', carry its machine number
// and end with CR LF ("~01@ROUTE 1,3,7 OK\r\n"). Errors come back as an
// error code ("~01@ROUTE ERR 003\r\n"). Ports are numbered from 1 on the
// wire, as on the panel. The package has three layers:
//
//   - framing: SplitLines (a bufio.SplitFunc yielding one line per token,
//     ended by CR or LF), ParseFrame and Frame.Bytes, with every size bounded
//     (MaxLineSize, MaxPorts);
//   - messages: DecodeCommands turns a controller's frame into typed commands
//     (Handshake, RouteSet, RouteQuery, InfoIOQuery, ModelQuery, LabelQuery,
//     UnknownCommand), DecodeReply turns a device's frame into a typed reply
//     (OK, RouteStatus, Err, IOCount, Model, Label, Switched, UnknownReply);
//     each formats back to a line that decodes to the same value;
//   - transport: Conn reads frames and writes commands or replies over any
//     io.ReadWriteCloser, so the same code plays the controller and the
//     device.
package wire
