// Package wire is the Blackmagic Videohub Ethernet protocol, for both of its
// ends: the driver (drivers/videohub) and the simulator
// (drivers/videohub/videohubsim).
//
// The protocol runs over TCP port 9990 as text blocks: an upper-case header
// line ending in ':', one item per line, and a blank line. Ports are numbered
// from 0 on the wire. The package has three layers:
//
//   - framing: SplitBlocks (a bufio.SplitFunc yielding one block per token),
//     ParseBlock and Block.Dump, with every size bounded (MaxBlockSize,
//     MaxPorts);
//   - messages: Decode turns a Block into a typed Message (Preamble, Device,
//     InputLabels, OutputLabels, OutputLocks, OutputRouting, Configuration,
//     EndPrelude, Ping, Ack, Nak, or Unknown for blocks to ignore), and
//     Message.Block turns it back;
//   - transport: Conn reads and writes messages over any io.ReadWriteCloser,
//     so the same code plays the client and the device.
package wire
