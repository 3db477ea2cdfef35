package delivery

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// On-disk layout of one certificate, in Dir/<namespace>/:
//
//	<name>                 symlink to .<name>.<version>, switched with rename(2)
//	.<name>.<version>/     tls.crt tls.key tls.pem [ca.crt], complete and fsynced
//	.<name>.tmp-<random>/  a version being written (removed on the next write)
//	.<name>.link-<random>  the new symlink before its rename
//
// Certificate names cannot contain a dot, so these names never collide
// with another certificate's.

// ErrNotManaged: Dir/<namespace>/<name> exists but is not a symlink the
// agent wrote; it is left alone. Like the other errors of a certificate's
// write, it comes wrapped in "delivery: certificate <ns>/<name>: ...".
var ErrNotManaged = errors.New("not managed by acmeq sync")

// testHook, when set (tests only), is called at each step of a write, so a
// test can kill the process there.
var testHook func(step string)

func hook(step string) {
	if testHook != nil {
		testHook(step)
	}
}

// writer writes bundles under dir.
type writer struct{ dir string }

func versionName(name, version string) string { return "." + name + "." + version }

// current returns the version dir/ns/name points at ("" if none).
func (w *writer) current(ns, name string) (string, error) {
	link := filepath.Join(w.dir, ns, name)
	target, err := os.Readlink(link)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		if fi, serr := os.Lstat(link); serr == nil && fi.Mode()&fs.ModeSymlink == 0 {
			return "", fmt.Errorf("%w: %s exists and is not a symlink; move it away to let the agent write there", ErrNotManaged, link)
		}
		return "", fmt.Errorf("read %s: %w", link, err)
	}
	prefix := "." + name + "."
	if !strings.HasPrefix(target, prefix) || strings.Contains(target, "/") {
		return "", fmt.Errorf("%w: %s points at %q, not at a version the agent wrote; move it away to let the agent write there", ErrNotManaged, link, target)
	}
	return strings.TrimPrefix(target, prefix), nil
}

// write makes dir/ns/name a complete copy of b. The new version is written
// and fsynced in a directory of its own before one rename(2) switches the
// symlink to it, so the symlink always names a complete, matching set of
// files, whatever moment the process dies at. It reports whether anything
// changed; a version already on disk with the same content is not
// rewritten. The previous version is kept until the next switch, for
// readers that resolved the symlink before this one.
func (w *writer) write(ns, name string, b *bundle) (changed bool, err error) {
	nsDir := filepath.Join(w.dir, ns)
	if err := mkdirSynced(nsDir); err != nil {
		return false, err
	}
	cur, err := w.current(ns, name)
	if err != nil {
		return false, err
	}
	if strings.HasPrefix(cur, b.version) && sameContent(filepath.Join(nsDir, versionName(name, cur)), b) {
		return false, nil
	}
	target := b.version
	verDir := filepath.Join(nsDir, versionName(name, target))
	// A complete version left by a write that died before the switch is
	// used as it is; anything else under that name is rewritten, except
	// the version the symlink names (its files were altered on disk):
	// that one stays until the switch, and the repair gets a new name.
	if !sameContent(verDir, b) {
		if cur == target {
			target = b.version + "-" + randomSuffix()
			verDir = filepath.Join(nsDir, versionName(name, target))
		} else if err := os.RemoveAll(verDir); err != nil {
			return false, fmt.Errorf("remove incomplete %s: %w", verDir, err)
		}
		if err := writeVersion(nsDir, name, verDir, b); err != nil {
			return false, err
		}
	}
	hook("version")
	tmpLink := filepath.Join(nsDir, "."+name+".link-"+randomSuffix())
	if err := os.Symlink(versionName(name, target), tmpLink); err != nil {
		return false, fmt.Errorf("write %s: %w", tmpLink, err)
	}
	if err := os.Rename(tmpLink, filepath.Join(nsDir, name)); err != nil {
		_ = os.Remove(tmpLink)
		return false, fmt.Errorf("switch %s to the new version: %w", filepath.Join(nsDir, name), err)
	}
	if err := syncDir(nsDir); err != nil {
		return true, err
	}
	hook("linked")
	w.cleanup(nsDir, name, target, cur)
	return true, nil
}

// writeVersion writes b's files into a temporary directory next to verDir,
// fsyncs them and the directory, and renames it to verDir.
func writeVersion(nsDir, name, verDir string, b *bundle) error {
	tmp, err := os.MkdirTemp(nsDir, "."+name+".tmp-")
	if err != nil {
		return fmt.Errorf("write certificate %s: %w", filepath.Join(nsDir, name), err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	for i, f := range b.files() {
		if err := writeFile(filepath.Join(tmp, f.name), f.data, fs.FileMode(f.perm), i == 0); err != nil {
			return err
		}
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	hook("files")
	if err := os.Rename(tmp, verDir); err != nil {
		return fmt.Errorf("write certificate %s: %w", verDir, err)
	}
	ok = true
	return syncDir(nsDir)
}

// writeFile creates path with exactly perm, writes data and fsyncs it.
// With pause (the first file, tests only) the test hook runs half way.
func writeFile(path string, data []byte, perm fs.FileMode, pause bool) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write %s: %w", path, cerr)
		}
	}()
	// The umask may have narrowed perm: set it exactly.
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	half := len(data) / 2
	if _, err := f.Write(data[:half]); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if pause {
		hook("partial")
	}
	if _, err := f.Write(data[half:]); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	return nil
}

// sameContent reports whether dir holds exactly b's files.
func sameContent(dir string, b *bundle) bool {
	want := b.files()
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != len(want) {
		return false
	}
	for _, f := range want {
		got, err := os.ReadFile(filepath.Join(dir, f.name))
		if err != nil || !bytes.Equal(got, f.data) {
			return false
		}
	}
	return true
}

// cleanup removes what earlier writes left for name in nsDir: versions
// other than keep and prev, and temporary files of interrupted writes.
// Failures only leave garbage behind; they are not errors of the write.
func (w *writer) cleanup(nsDir, name, keep, prev string) {
	entries, err := os.ReadDir(nsDir)
	if err != nil {
		return
	}
	prefix := "." + name + "."
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, prefix) {
			continue
		}
		rest := strings.TrimPrefix(n, prefix)
		if rest == keep || (prev != "" && rest == prev) {
			continue
		}
		_ = os.RemoveAll(filepath.Join(nsDir, n))
	}
}

// remove deletes dir/ns/name and its versions (--prune). It reports
// whether there was anything to remove.
func (w *writer) remove(ns, name string) (bool, error) {
	nsDir := filepath.Join(w.dir, ns)
	cur, err := w.current(ns, name)
	if err != nil {
		return false, err
	}
	if cur == "" {
		return false, nil
	}
	// The symlink goes first: a reader never finds it pointing at a
	// half-removed version.
	if err := os.Remove(filepath.Join(nsDir, name)); err != nil {
		return false, fmt.Errorf("prune %s: %w", filepath.Join(nsDir, name), err)
	}
	if err := syncDir(nsDir); err != nil {
		return true, err
	}
	w.cleanup(nsDir, name, "\x00", "")
	return true, nil
}

// managed lists the certificate names with a symlink the agent wrote in
// dir/ns.
func (w *writer) managed(ns string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(w.dir, ns))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.Type()&fs.ModeSymlink == 0 || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if v, err := w.current(ns, e.Name()); err == nil && v != "" {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// probe checks that dir exists (creating it) and that files can be
// created in it, so a directory the agent cannot write is reported at
// start, naming the directory.
func (w *writer) probe() error {
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return fmt.Errorf("delivery: sync directory %s cannot be created: %w", w.dir, err)
	}
	f, err := os.CreateTemp(w.dir, ".acmeq-probe-")
	if err != nil {
		return fmt.Errorf("delivery: sync directory %s is not writable: %w", w.dir, err)
	}
	name := f.Name()
	_ = f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("delivery: sync directory %s: %w", w.dir, err)
	}
	return nil
}

// mkdirSynced creates dir (and its parents) and fsyncs the parent of each
// directory it created, so the new entry survives a crash.
func mkdirSynced(dir string) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	if err := mkdirSynced(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return syncDir(filepath.Dir(dir))
}

// syncDir fsyncs a directory, making the renames and creations in it
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
