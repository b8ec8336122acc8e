// Package materialcopy gives a restored recorder back the material it missed.
//
// When a recorder is lost, a failover server records its cameras meanwhile.
// When the recorder returns, the material the failover server recorded for it
// must be copied back to it — only what the restored member lacks or has
// incomplete, for the period it was covered, and without ever overwriting
// anything the member has that differs. Copy does that, from a Source to a
// local destination folder:
//
//   - a file missing on the destination is copied;
//   - a file already there with the same size and xxh3-64 hash is skipped;
//   - a shorter file whose content is a prefix of the source's is completed
//     (only the missing tail is transferred);
//   - anything else that differs is a conflict and is left alone.
//
// Files are written to a temporary name in the target's directory
// (.NAME.understudy-partial), fsynced, verified against the source's hash and
// only then renamed into place, so a target is never half-written. An
// interrupted copy (cancelled, connection dropped, destination disk full)
// leaves the temporary file, and the next Copy resumes it from where it
// stopped after checking that its content is still a prefix of the source.
//
// A Source is either a folder on this machine (Local, when both sides are
// mounted) or another instance's material server (Remote). An instance serves
// its material folders read-only to an authorised peer with NewServer: bearer
// token, paths confined to the named roots, HTTP Range for resuming.
//
// Grants serves them per copy instead: on one listener, each copy authorised
// separately by the coordinator with a Grant of its own token and its own
// roots (for example only the restored member's folder). A grant is forgotten
// when its holder releases it (Release, once its copy is done) or after it
// has been idle too long; a token with no live grant gets a 403 that
// IsNotGranted recognises, which a copier retries for a while because the
// grant may arrive after the copy command.
package materialcopy
