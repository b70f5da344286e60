package daemon

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/wiz-run/wiz/core/manager"
)

// maxHookBody is the largest webhook body: 1 MiB.
const maxHookBody = 1 << 20

// Hooks serves webhook triggers: POST /hooks/PIPELINE/TRIGGER with the
// trigger's secret as bearer token and a JSON object of inputs. It answers
// 201 {"run_id": …} (200 when an Idempotency-Key was seen before), 400 with
// the message --input would give, 401, 404, 405 or 413. count, when set, is
// told each answer's status.
func Hooks(m *manager.Manager, log hclog.Logger, count func(code int)) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/hooks/{pipeline}/{trigger}", func(w http.ResponseWriter, r *http.Request) {
		code, v := hook(m, w, r)
		if count != nil {
			count(code)
		}
		if code >= 500 {
			log.Error("webhook", "path", r.URL.Path, "error", v["error"])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	})
	return mux
}

func hook(m *manager.Manager, w http.ResponseWriter, r *http.Request) (int, map[string]any) {
	fail := func(code int, msg string) (int, map[string]any) { return code, map[string]any{"error": msg} }
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return fail(http.StatusMethodNotAllowed, "a webhook takes POST")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxHookBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return fail(http.StatusRequestEntityTooLarge, "the body is over 1 MiB")
	case err != nil:
		return fail(http.StatusBadRequest, "read the body: "+err.Error())
	}
	// RFC 7235: the scheme is case-insensitive.
	scheme, secret, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		secret = ""
	}
	id, replay, err := m.Webhook(r.PathValue("pipeline"), r.PathValue("trigger"), strings.TrimSpace(secret), r.Header.Get("Idempotency-Key"), body)
	switch {
	case errors.Is(err, manager.ErrNotFound):
		return fail(http.StatusNotFound, err.Error())
	case errors.Is(err, manager.ErrWebhookAuth):
		return fail(http.StatusUnauthorized, "missing or wrong secret: send it as Authorization: Bearer SECRET (wiz triggers url prints it)")
	case errors.Is(err, manager.ErrWebhookBody):
		return fail(http.StatusBadRequest, strings.TrimPrefix(err.Error(), manager.ErrWebhookBody.Error()+": "))
	case err != nil:
		return fail(http.StatusInternalServerError, err.Error())
	case replay:
		return http.StatusOK, map[string]any{"run_id": id}
	}
	return http.StatusCreated, map[string]any{"run_id": id}
}
