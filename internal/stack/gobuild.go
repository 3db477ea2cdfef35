package stack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ModulePath is acmeq's Go module path: ModuleRoot looks for the go.mod
// that declares it.
const ModulePath = "github.com/acmeq/acmeq"

// goBuildTimeout bounds one `go build` (a cold build of nats-server takes
// a minute on a small, busy machine).
const goBuildTimeout = 10 * time.Minute

// ErrNoModule: the working directory is not inside acmeq's source tree, so
// the go command cannot build with acmeq's dependencies.
var ErrNoModule = errors.New("stack: not inside acmeq's source tree (no go.mod declaring " + ModulePath + " here or above): run from a checkout")

// ModuleRoot returns the directory of acmeq's go.mod, searched from the
// working directory upwards.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("stack: %w", err)
	}
	for {
		if isAcmeqModule(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", ErrNoModule
		}
		dir = parent
	}
}

func isAcmeqModule(gomod string) bool {
	f, err := os.Open(gomod)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`) == ModulePath
		}
	}
	return false
}

// GoBuild builds a main package with the go command inside acmeq's module,
// so that its dependencies are the versions acmeq's go.mod selects and
// their sources come from the module cache.
type GoBuild struct {
	// ModuleDir is where the go command runs. Defaults to ModuleRoot().
	ModuleDir string
	// Package is the import path of the main package.
	Package string
	// Overlay replaces or adds source files for this build only (go build
	// -overlay): absolute path, as the go command sees it, to contents.
	// Nothing on disk is changed. The go command refuses to overlay files
	// in the module cache: see Replace.
	Overlay map[string][]byte
	// Replace builds with copies of modules taken out of the module cache,
	// so that their files can be overlaid (see Replacement).
	Replace []Replacement
	// Cache keeps the binary under os.UserCacheDir()/acmeq/bin, named by a
	// hash of everything that goes into it (the go version and platform,
	// acmeq's go.mod and go.sum, the package and the overlay), and reuses
	// it on later builds. Only for code that does not change between
	// builds with the same hash: third-party modules (acmeq's own packages
	// change without go.sum changing). Without Cache the binary is built
	// into OutDir.
	Cache bool
	// OutDir receives the binary when Cache is false. Defaults to a new
	// temporary directory, which the caller removes.
	OutDir string
}

// Replacement is a module built from a copy of its directory (a
// temporary directory, through a temporary -modfile with a replace
// directive), with some of its files overlaid.
type Replacement struct {
	// Module is the module path, e.g. "github.com/letsencrypt/pebble/v2".
	Module string
	// Dir is the module's directory in the module cache (ModuleDir).
	Dir string
	// Overlay replaces files of the copy, by slash-separated path relative
	// to the module's root ("db/memorystore.go"). The copy itself is left
	// as it was in the module cache.
	Overlay map[string][]byte
}

// Build builds the package and returns the path of the binary.
func (b GoBuild) Build(ctx context.Context) (string, error) {
	if b.Package == "" {
		return "", errors.New("stack: go build: GoBuild.Package is empty")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("stack: go build: the go command is not in PATH (install Go 1.26: https://go.dev/dl/)")
	}
	if b.ModuleDir == "" {
		if b.ModuleDir, err = ModuleRoot(); err != nil {
			return "", err
		}
	}
	out, cached, err := b.output(ctx, gobin)
	if err != nil || cached {
		return out, err
	}
	// Build next to the destination and rename: two builds at once (two
	// benchmarks) never see a half-written binary.
	tmp := fmt.Sprintf("%s.tmp-%d", out, os.Getpid())
	defer os.Remove(tmp)
	args := []string{"build", "-o", tmp}
	if len(b.Replace) > 0 || len(b.Overlay) > 0 {
		work, err := os.MkdirTemp("", "acmeq-gobuild-")
		if err != nil {
			return "", fmt.Errorf("stack: go build %s: %w", b.Package, err)
		}
		defer os.RemoveAll(work)
		flags, err := b.overlayFlags(work)
		if err != nil {
			return "", fmt.Errorf("stack: go build %s: %w", b.Package, err)
		}
		args = append(args, flags...)
	}
	args = append(args, b.Package)
	ctx, cancel := context.WithTimeout(ctx, goBuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, args...)
	cmd.Dir = b.ModuleDir
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("stack: go %s (in %s): %w\n%s", strings.Join(args, " "), b.ModuleDir, err, bytes.TrimSpace(msg))
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", fmt.Errorf("stack: go build %s: %w", b.Package, err)
	}
	return out, nil
}

// binaryName is the name of the package's binary, as go build names it:
// the last element of its path that is not a major version.
func (b GoBuild) binaryName() string {
	name := path.Base(b.Package)
	if strings.HasPrefix(name, "v") && strings.Trim(name[1:], "0123456789") == "" {
		// github.com/nats-io/nats-server/v2 -> nats-server
		name = path.Base(path.Dir(b.Package))
	}
	return name
}

// output returns the path the binary goes to: in the user's cache
// directory, named after the build's inputs, with Cache (cached reports a
// binary already built there); else in OutDir or a new temporary
// directory.
func (b GoBuild) output(ctx context.Context, gobin string) (out string, cached bool, err error) {
	name := b.binaryName()
	if !b.Cache {
		dir := b.OutDir
		if dir == "" {
			if dir, err = os.MkdirTemp("", "acmeq-build-"); err != nil {
				return "", false, fmt.Errorf("stack: go build %s: %w", b.Package, err)
			}
		}
		return filepath.Join(dir, name), false, nil
	}
	key, err := b.cacheKey(ctx, gobin)
	if err != nil {
		return "", false, err
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", false, fmt.Errorf("stack: go build %s: cache dir: %w", b.Package, err)
	}
	dir := filepath.Join(base, "acmeq", "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, fmt.Errorf("stack: go build %s: %w", b.Package, err)
	}
	out = filepath.Join(dir, name+"-"+key[:16])
	fi, err := os.Stat(out)
	return out, err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0, nil
}

// overlayFlags writes, under work, the go.mod that applies b.Replace and
// the overlay of b.Overlay (plus the replaced modules' files), and returns
// the go build flags that use them.
func (b GoBuild) overlayFlags(work string) ([]string, error) {
	var args []string
	overlay := maps.Clone(b.Overlay)
	if overlay == nil {
		overlay = map[string][]byte{}
	}
	if len(b.Replace) > 0 {
		modfile, err := b.writeModfile(work, overlay)
		if err != nil {
			return nil, err
		}
		args = append(args, "-modfile", modfile)
	}
	f, err := writeOverlay(filepath.Join(work, "overlay"), overlay)
	if err != nil {
		return nil, err
	}
	return append(args, "-overlay", f), nil
}

// writeModfile copies each replaced module into work/mod-<i>, adds the
// overlay of each to overlay (by absolute path in the copy), and writes
// work/build.mod (acmeq's go.mod and a replace directive per module) and
// build.sum (acmeq's go.sum), the -modfile of the build.
func (b GoBuild) writeModfile(work string, overlay map[string][]byte) (string, error) {
	gomod, err := os.ReadFile(filepath.Join(b.ModuleDir, "go.mod"))
	if err != nil {
		return "", err
	}
	gosum, err := os.ReadFile(filepath.Join(b.ModuleDir, "go.sum"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	mod := bytes.NewBuffer(gomod)
	for i, r := range b.Replace {
		dst := filepath.Join(work, fmt.Sprintf("mod-%d", i))
		if err := copyTree(r.Dir, dst); err != nil {
			return "", fmt.Errorf("copy %s: %w", r.Module, err)
		}
		for rel, data := range r.Overlay {
			p := filepath.Join(dst, filepath.FromSlash(rel))
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("overlay %s of %s: %w", rel, r.Module, err)
			}
			overlay[p] = data
		}
		fmt.Fprintf(mod, "\nreplace %s => %s\n", r.Module, dst)
	}
	modfile := filepath.Join(work, "build.mod")
	if err := os.WriteFile(modfile, mod.Bytes(), 0o644); err != nil {
		return "", err
	}
	return modfile, os.WriteFile(filepath.Join(work, "build.sum"), gosum, 0o644)
}

// copyTree copies the regular files under src to dst, writable (the
// module cache's are read-only).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

// writeOverlay writes the files of an overlay and the JSON that maps the
// originals to them; it returns the JSON's path.
func writeOverlay(dir string, files map[string][]byte) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	replace := map[string]string{}
	i := 0
	for _, orig := range slices.Sorted(maps.Keys(files)) {
		if !filepath.IsAbs(orig) {
			return "", fmt.Errorf("overlay path %q is not absolute", orig)
		}
		p := filepath.Join(dir, fmt.Sprintf("%d-%s", i, filepath.Base(orig)))
		i++
		if err := os.WriteFile(p, files[orig], 0o644); err != nil {
			return "", err
		}
		replace[orig] = p
	}
	b, err := json.Marshal(map[string]any{"Replace": replace})
	if err != nil {
		return "", err
	}
	f := filepath.Join(dir, "overlay.json")
	return f, os.WriteFile(f, b, 0o644)
}

// cacheKey hashes what goes into the binary.
func (b GoBuild) cacheKey(ctx context.Context, gobin string) (string, error) {
	h := sha256.New()
	cmd := exec.CommandContext(ctx, gobin, "env", "GOVERSION", "GOOS", "GOARCH", "CGO_ENABLED", "GOFLAGS", "GOEXPERIMENT")
	cmd.Dir = b.ModuleDir
	env, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("stack: go env: %w", err)
	}
	fmt.Fprintf(h, "go env:\n%s\npackage %s\n", env, b.Package)
	for _, f := range []string{"go.mod", "go.sum"} {
		data, err := os.ReadFile(filepath.Join(b.ModuleDir, f))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("stack: go build: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", f, len(data))
		h.Write(data)
	}
	for _, p := range slices.Sorted(maps.Keys(b.Overlay)) {
		fmt.Fprintf(h, "overlay %s %d\n", p, len(b.Overlay[p]))
		h.Write(b.Overlay[p])
	}
	for _, r := range b.Replace {
		// The module cache's directory names the version; a copy is
		// temporary and does not count.
		fmt.Fprintf(h, "replace %s %s\n", r.Module, r.Dir)
		for _, p := range slices.Sorted(maps.Keys(r.Overlay)) {
			fmt.Fprintf(h, "overlay %s %d\n", p, len(r.Overlay[p]))
			h.Write(r.Overlay[p])
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ModuleDir returns the directory of module mod (e.g.
// "github.com/letsencrypt/pebble/v2") in the module cache, at the version
// acmeq's go.mod selects.
func ModuleDir(ctx context.Context, moduleDir, mod string) (string, error) {
	if moduleDir == "" {
		var err error
		if moduleDir, err = ModuleRoot(); err != nil {
			return "", err
		}
	}
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", mod)
	cmd.Dir = moduleDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("stack: go list -m %s: %w: %s", mod, err, bytes.TrimSpace(stderr.Bytes()))
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("stack: module %s is not in the module cache (run go mod download %s)", mod, mod)
	}
	return dir, nil
}
