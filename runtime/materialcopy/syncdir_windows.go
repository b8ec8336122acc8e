//go:build windows

package materialcopy

// syncDir does nothing on Windows, which cannot flush a directory
// (FlushFileBuffers on a directory opened for reading is "Access is
// denied"). Each file's data is synced before its rename, and NTFS's journal
// keeps the rename whole, but one made just before a power cut may be undone:
// the next copy then finds the file missing and copies it again (or resumes
// its temporary file).
func syncDir(string) error { return nil }
