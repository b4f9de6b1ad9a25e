package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"time"
)

// asset is one dashboard file, read once at start.
type asset struct {
	body        []byte
	etag        string
	contentType string
}

// assetSet is the dashboard: index.html, served at /, and the files under
// assets/, served at /assets/.
type assetSet struct {
	index asset
	files map[string]asset // by path, e.g. "assets/app.js"
}

// loadAssets reads the dashboard from fsys. It fails when index.html is
// missing.
func loadAssets(fsys fs.FS) (*assetSet, error) {
	set := &assetSet{files: make(map[string]asset)}
	index, err := readAsset(fsys, "index.html")
	if err != nil {
		return nil, fmt.Errorf("httpapi: dashboard: %w", err)
	}
	set.index = index

	err = fs.WalkDir(fsys, "assets", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		a, err := readAsset(fsys, name)
		if err != nil {
			return err
		}
		set.files[name] = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("httpapi: dashboard: %w", err)
	}
	return set, nil
}

func readAsset(fsys fs.FS, name string) (asset, error) {
	body, err := fs.ReadFile(fsys, name)
	if err != nil {
		return asset{}, err
	}
	sum := sha256.Sum256(body)
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	return asset{
		body:        body,
		etag:        `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
		contentType: ct,
	}, nil
}

// handleDashboard serves the dashboard page at GET /.
func (s *server) handleDashboard() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveAsset(w, r, "index.html", s.assets.index)
	})
}

// handleAsset serves GET /assets/{name...}: the dashboard's scripts and
// styles. The embedded files change only with the binary, so clients
// revalidate them by ETag.
func (s *server) handleAsset() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := "assets/" + r.PathValue("name")
		a, ok := s.assets.files[name]
		if !ok {
			s.writeError(w, http.StatusNotFound, "no dashboard file "+name)
			return
		}
		serveAsset(w, r, name, a)
	})
}

func serveAsset(w http.ResponseWriter, r *http.Request, name string, a asset) {
	h := w.Header()
	h.Set("Content-Security-Policy", dashboardCSP)
	h.Set("Content-Type", a.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
}
