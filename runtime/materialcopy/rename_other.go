//go:build !linux

package materialcopy

// renameNoReplace renames oldpath to newpath unless newpath exists (checked
// right before renaming). An existing newpath gives an error matching
// fs.ErrExist.
func renameNoReplace(oldpath, newpath string) error { return renameCheck(oldpath, newpath) }
