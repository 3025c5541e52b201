package cmd

import (
	"log/slog"
	"net"
	"net/http"
	"path"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/state"
)

// reverifyAfter is how long a file's digest check is trusted while the file
// keeps its size and modification time; a changed file is checked at once.
const reverifyAfter = 10 * time.Minute

func newServeFilesCmd(app *App) *cobra.Command {
	var addr string
	c := &cobra.Command{
		Use:   "serve-files [--addr <host:port>]",
		Short: "Serve the stored firmware files to devices over HTTP",
		Long: `Serve the firmware images of the file store (the files folder beside the state
file) over HTTP, by digest, with range requests so that devices can resume a
download. Each file is checked against its digest before it is served: a
file altered on disk gets 500 and a log line, never its bytes.

Set files.base-url (OTACTL_FILES_BASE_URL) to this server's address, as
devices reach it, so that pushes carry http:// URLs instead of file:// ones.
The agent can serve files too, with --serve-files.`,
		Example: `  $ otactl serve-files --addr 0.0.0.0:8080
  $ export OTACTL_FILES_BASE_URL=http://fw.example.net:8080/`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			log, err := agentLogger(app, "")
			if err != nil {
				return err
			}
			srv, ln, err := newFileServer(app, addr, log)
			if err != nil {
				return err
			}
			log.Info("serving firmware files", "addr", ln.Addr().String(), "dir", app.files().Dir())
			go func() {
				<-app.Context.Done()
				srv.Close()
			}()
			if err := srv.Serve(ln); err != http.ErrServerClosed {
				return err
			}
			return nil
		},
	}
	c.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "`host:port` to listen on")
	return c
}

func newFileServer(app *App, addr string, log *slog.Logger) (*http.Server, net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, ota.Invalid("--addr %s: %v", addr, err)
	}
	h := &fileHandler{files: app.files(), log: log, checked: map[string]fileCheck{}}
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, ln, nil
}

// fileHandler serves stored images by name, the last element of the path,
// so that files.base-url may carry a path of its own.
type fileHandler struct {
	files *state.Files
	log   *slog.Logger

	mu      sync.Mutex
	checked map[string]fileCheck
}

type fileCheck struct {
	size    int64
	modTime time.Time
	at      time.Time
}

func (h *fileHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name := path.Base(r.URL.Path)
	if h.files.Path(name) == "" {
		http.NotFound(w, r)
		return
	}
	f, err := h.files.Open(name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		http.Error(w, "cannot read file", http.StatusInternalServerError)
		return
	}
	if err := h.verify(name, st.Size(), st.ModTime()); err != nil {
		h.log.Error("refused a stored file that does not match its digest", "file", name, "err", err)
		http.Error(w, "stored file failed its digest check", http.StatusInternalServerError)
		return
	}
	h.log.Debug("serving", "file", name, "range", r.Header.Get("Range"), "remote", r.RemoteAddr)
	http.ServeContent(w, r, name, st.ModTime(), f)
}

// verify checks a file against its digest (its name), trusting an earlier
// check while the file keeps its size and modification time.
func (h *fileHandler) verify(name string, size int64, mod time.Time) error {
	h.mu.Lock()
	c, ok := h.checked[name]
	h.mu.Unlock()
	if ok && c.size == size && c.modTime.Equal(mod) && time.Since(c.at) < reverifyAfter {
		return nil
	}
	if err := h.files.Verify(name, ota.SignSHA256, name); err != nil {
		h.mu.Lock()
		delete(h.checked, name)
		h.mu.Unlock()
		return err
	}
	h.mu.Lock()
	h.checked[name] = fileCheck{size: size, modTime: mod, at: time.Now()}
	h.mu.Unlock()
	return nil
}
