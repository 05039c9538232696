package cloudinit

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// WriteISO writes files as an ISO9660 image labelled cidata, with Rock
// Ridge and Joliet names (plain ISO9660 would turn meta-data into
// META_DAT), to path: written beside it and renamed into place, mode 0644
// (a confined QEMU gets it as an fd; cloud-init reads it as root).
func WriteISO(path string, files map[string][]byte) (err error) {
	dir := filepath.Dir(path)
	work, err := os.MkdirTemp(dir, ".seed-work-")
	if err != nil {
		return fmt.Errorf("cloud-init seed: %w", err)
	}
	defer os.RemoveAll(work)
	tmp := filepath.Join(work, "seed.iso")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("cloud-init seed: %w", err)
	}
	defer f.Close()
	stage := filepath.Join(work, "stage")
	if err := os.Mkdir(stage, 0o700); err != nil {
		return fmt.Errorf("cloud-init seed: %w", err)
	}
	fsys, err := iso9660.Create(file.New(f, false), 0, 0, 2048, stage)
	if err != nil {
		return fmt.Errorf("cloud-init seed: %w", err)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		w, err := fsys.OpenFile("/"+n, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("cloud-init seed: %s: %w", n, err)
		}
		_, err = w.Write(files[n])
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("cloud-init seed: %s: %w", n, err)
		}
	}
	opts := iso9660.FinalizeOptions{RockRidge: true, Joliet: true, VolumeIdentifier: Label}
	if err := fsys.Finalize(opts); err != nil {
		return fmt.Errorf("cloud-init seed: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("cloud-init seed: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("cloud-init seed: %w", err)
	}
	return nil
}

// ReadISO reads a seed image back: its volume label and its files (the
// top directory's regular files).
func ReadISO(path string) (label string, files map[string][]byte, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, fmt.Errorf("cloud-init seed: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", nil, fmt.Errorf("cloud-init seed: %w", err)
	}
	fsys, err := iso9660.Read(file.New(f, true), fi.Size(), 0, 2048)
	if err != nil {
		return "", nil, fmt.Errorf("cloud-init seed %s: %w", path, err)
	}
	entries, err := fsys.ReadDir(".")
	if err != nil {
		return "", nil, fmt.Errorf("cloud-init seed %s: %w", path, err)
	}
	files = map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := fsys.ReadFile(e.Name())
		if err != nil {
			return "", nil, fmt.Errorf("cloud-init seed %s: %s: %w", path, e.Name(), err)
		}
		files[e.Name()] = b
	}
	// The volume id is padded (with NULs in the Joliet descriptor).
	return strings.TrimRight(fsys.Label(), "\x00 "), files, nil
}
