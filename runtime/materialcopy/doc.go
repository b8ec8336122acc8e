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
//   - a file already there with the same size and modification time is
//     skipped without reading either side, like rsync's quick check (Copy
//     gives every file it places the source's mtime, so what it copied
//     before matches); with Job.Checksum it is compared by content as below;
//   - a file already there with the same size but another mtime is compared
//     by content: skipped when both sides have the same xxh3-64 hash;
//   - a shorter file whose content is a prefix of the source's is completed
//     (only the missing tail is transferred);
//   - anything else that differs is a conflict and is left alone.
//
// Copies never gain permissions: a file or folder Copy creates gets its
// source's permission bits without group or others' write and without
// setuid, setgid or sticky bits (FilePerm, DirPerm); a file is owner-only
// while it is written.
//
// Files are written to a temporary name in the target's directory
// (.NAME.understudy-partial), hashed as they are written, fsynced, verified
// against the source's hash of the whole file and only then renamed into
// place, so a target is never half-written. An interrupted copy (cancelled,
// connection dropped, destination disk full) leaves the temporary file, and
// the next Copy resumes it from where it stopped after checking that its
// content is still a prefix of the source. Several files are compared and
// copied at once (Job.Parallel), under one bandwidth limit.
//
// A Source is either a folder on this machine (Local, when both sides are
// mounted) or another instance's material server (Remote). An instance serves
// its material folders read-only to an authorised peer with NewServer: bearer
// token, paths confined to the named roots, HTTP Range for resuming.
//
// Grants serves them per copy instead: on one listener, each copy authorised
// separately by the coordinator with a Grant of its own token that opens one
// subfolder (the restored member's) of the served folders, reached without
// symlinks, and nothing above or beside it. A grant is forgotten
// when its holder releases it (Release, once its copy is done) or after it
// has been idle too long; a token with no live grant gets a 403 that
// IsNotGranted recognises, which a copier retries for a while because the
// grant may arrive after the copy command.
package materialcopy
