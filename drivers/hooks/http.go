package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

const (
	// maxHTTPBody is how much of a response body is kept.
	maxHTTPBody = 4 << 10
	// maxHTTPDrain is how much more of a body is read (and discarded) so the
	// connection can be reused.
	maxHTTPDrain = 64 << 10

	userAgent = "understudy-hooks"
)

// runHTTP runs an http step.
func runHTTP(stepCtx, ctx context.Context, s Step, data map[string]any, sr *StepResult) error {
	h := s.HTTP
	method := h.method()
	rawURL, err := expand("http.url", h.URL, data)
	if err != nil {
		return err
	}
	sr.What = describeHTTP(method, rawURL)
	if err := checkURL(rawURL); err != nil {
		return fmt.Errorf("http.url: %w", err)
	}
	var body io.Reader
	if h.Body != "" {
		b, err := expand("http.body", h.Body, data)
		if err != nil {
			return err
		}
		body = strings.NewReader(b)
	}
	req, err := http.NewRequestWithContext(stepCtx, method, rawURL, body)
	if err != nil {
		return fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("User-Agent", userAgent)
	for _, name := range sortedKeys(h.Headers) {
		v, err := expand("http.headers."+name, h.Headers[name], data)
		if err != nil {
			return err
		}
		if strings.EqualFold(name, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(name, v)
	}

	client := &http.Client{Timeout: s.timeout()}
	resp, err := client.Do(req)
	if err != nil {
		if why, cause := interrupted(stepCtx, ctx, s.timeout()); cause != nil {
			return fmt.Errorf("%s: %w: %w", why, cause, err)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("did not finish within %v: %w", s.timeout(), err)
		}
		return fmt.Errorf("request failed: %w", err)
	}
	defer resp.Body.Close()
	sr.Status = resp.StatusCode
	got, readErr := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody+1))
	truncated := len(got) > maxHTTPBody
	if truncated {
		got = got[:maxHTTPBody]
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxHTTPDrain))
	}
	sr.Output = string(got)
	if truncated {
		sr.Output += fmt.Sprintf("\n[body truncated: only the first %d bytes kept]", maxHTTPBody)
	}

	if !statusOK(resp.StatusCode, h.Expect) {
		msg := fmt.Sprintf("status %s, expected %s", resp.Status, expectText(h.Expect))
		if line := firstLine(string(got)); line != "" {
			msg += ": " + line
		}
		return errors.New(msg)
	}
	if readErr != nil {
		if why, cause := interrupted(stepCtx, ctx, s.timeout()); cause != nil {
			return fmt.Errorf("reading the response: %s: %w: %w", why, cause, readErr)
		}
		return fmt.Errorf("reading the response (status %d): %w", resp.StatusCode, readErr)
	}
	return nil
}

func statusOK(code int, expect []int) bool {
	if len(expect) == 0 {
		return code >= 200 && code <= 299
	}
	return slices.Contains(expect, code)
}

func expectText(expect []int) string {
	if len(expect) == 0 {
		return "2xx"
	}
	parts := make([]string, len(expect))
	for i, c := range expect {
		parts[i] = strconv.Itoa(c)
	}
	return strings.Join(parts, " or ")
}
