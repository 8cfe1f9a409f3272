package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/idprov/idprov/provision/filter"
)

// The errors a newcomer meets first say what is wrong and where: a bad
// flag in one line with a hint (not the whole usage), a -db path whose
// directory is missing, a -config file's JSON error with its line and
// column.

// flagError turns a flag parse error into one line with a hint; -h
// prints the usage to stdout and returns flag.ErrHelp.
func flagError(fs *flag.FlagSet, stdout io.Writer, err error) error {
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fmt.Fprintln(stdout, "Usage of saas-app:")
		fs.PrintDefaults()
		return err
	}
	return fmt.Errorf("%w (go run ./examples/saas-app -h lists the flags)", err)
}

// checkDBDir says when a SQLite file's directory does not exist, before
// the driver fails deep in a migration.
func checkDBDir(path string) error {
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("-db %s: the directory %s does not exist: create it, or give -db a path in an existing directory (or -db memory)", path, dir)
	case err != nil:
		return fmt.Errorf("-db %s: %w", path, err)
	case !st.IsDir():
		return fmt.Errorf("-db %s: %s is not a directory", path, dir)
	}
	return nil
}

// jsonError places a JSON decoding error of data at its line and column.
func jsonError(file string, data []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var part offsetError
	start := int64(0)
	if errors.As(err, &part) {
		start, err = part.Start, part.error
	}
	offset, what := int64(-1), err.Error()
	switch {
	case errors.As(err, &syn):
		offset = start + max(syn.Offset-1, 0) // Offset is past the bad byte
	case errors.As(err, &typ):
		offset = start + typ.Offset
		what = fmt.Sprintf("%s must be a %s, not a JSON %s", typ.Field, typ.Type, typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		offset = int64(len(data))
		what = "the JSON ends too early (a missing } or ], or a cut file)"
	}
	if offset < 0 {
		return fmt.Errorf("-config %s: %w", file, err)
	}
	line, col := position(data, offset)
	if what == err.Error() {
		return fmt.Errorf("-config %s:%d:%d: %w", file, line, col, err)
	}
	return fmt.Errorf("-config %s:%d:%d: %s: %w", file, line, col, what, err)
}

// position returns the 1-based line and column of byte offset in data.
func position(data []byte, offset int64) (line, col int) {
	offset = min(max(offset, 0), int64(len(data)))
	before := string(data[:offset])
	line = strings.Count(before, "\n") + 1
	col = int(offset) - strings.LastIndex(before, "\n")
	return line, col
}

// valueError is a JSON value a custom type refused; decodeConfig finds it
// in the file to name its tenant, field, line and column.
type valueError struct {
	Value string // as written in the file, JSON
	Want  string
}

func (e *valueError) Error() string { return e.Value + " is not " + e.Want }

// decodeConfig decodes a -config file tenant by tenant, so that an error
// names the tenant and the field, with its line and column; it checks the
// access rules' filters too.
func decodeConfig(file string, data []byte) (fileConfig, error) {
	var raw struct {
		Tenants []json.RawMessage `json:"tenants"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return fileConfig{}, jsonError(file, data, err)
	}
	var fc fileConfig
	at := 0
	for _, r := range raw.Tenants {
		start := at + bytes.Index(data[at:], r)
		at = start + len(r)
		var tc tenantConfig
		var id struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(r, &id)
		name := fmt.Sprintf("tenant %q", id.ID)
		dec := json.NewDecoder(bytes.NewReader(r))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&tc); err != nil {
			var ve *valueError
			if errors.As(err, &ve) {
				m := regexp.MustCompile(`"([A-Za-z0-9_]+)"\s*:\s*` + regexp.QuoteMeta(ve.Value)).FindSubmatchIndex(r)
				if m != nil {
					line, col := position(data, int64(start+m[0]))
					return fileConfig{}, fmt.Errorf("-config %s:%d:%d: %s: %s: %w", file, line, col, name, r[m[2]:m[3]], err)
				}
				return fileConfig{}, fmt.Errorf("-config %s: %s: %w", file, name, err)
			}
			shifted := jsonError(file, data, offsetError{err, int64(start)})
			return fileConfig{}, fmt.Errorf("%w (in %s)", shifted, name)
		}
		for i, ar := range tc.AccessRules {
			if ar.Filter == "" {
				continue
			}
			if _, err := filter.ParseFor(filter.Users, ar.Filter); err != nil {
				return fileConfig{}, fmt.Errorf("-config %s: %s: accessRules[%d] (%q): filter %q: %w", file, name, i, ar.ID, ar.Filter, err)
			}
		}
		fc.Tenants = append(fc.Tenants, tc)
	}
	return fc, nil
}

// offsetError is a decoding error of a part of a file that starts at
// Start: jsonError adds it to the error's offset.
type offsetError struct {
	error
	Start int64
}

func (e offsetError) Unwrap() error { return e.error }
