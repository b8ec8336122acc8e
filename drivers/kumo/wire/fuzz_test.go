package wire

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// The corpora under testdata/fuzz run as part of go test.

func FuzzParseReply(f *testing.F) {
	f.Add([]byte(`{"paramid":"1","name":"eParamID_XPT_Destination1_Status","value":"3","value_name":"3"}`))
	f.Add([]byte(`{"value":{"salvodata":[1,2]},"error":1}`))
	f.Add([]byte("<html>403 Forbidden</html>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseReply(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseReply error %v does not wrap ErrMalformed", err)
			}
			return
		}
		for _, s := range []string{r.ParamID, r.Name, r.Value, r.ValueName, r.Error} {
			if !utf8.ValidString(s) {
				t.Fatalf("reply %+v holds invalid UTF-8", r)
			}
		}
		b := r.Marshal()
		if len(b) > MaxBody {
			return // escaping may make a reply near the limit longer
		}
		again, err := ParseReply(b)
		if err != nil || again != r {
			t.Fatalf("round trip: %+v became %q, then %+v, %v", r, b, again, err)
		}
		_ = r.Failed()
		if n, err := r.Port(MaxPorts); err == nil && (n < 0 || n > MaxPorts) {
			t.Fatalf("Port() = %d", n)
		}
	})
}

func FuzzParseRoutingList(f *testing.F) {
	f.Add([]byte("[1,2,4,4]"))
	f.Add([]byte("{}"))
	f.Add([]byte(" [ 0 , 64 ]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := ParseRoutingList(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNoRoutingList) {
				t.Fatalf("ParseRoutingList error %v wraps neither ErrMalformed nor ErrNoRoutingList", err)
			}
			return
		}
		if len(list) > MaxPorts {
			t.Fatalf("%d destinations", len(list))
		}
		for _, v := range list {
			if v < 0 || v > MaxPorts {
				t.Fatalf("source %d", v)
			}
		}
		again, err := ParseRoutingList(FormatRoutingList(list))
		if err != nil || !reflect.DeepEqual(again, list) {
			t.Fatalf("round trip: %v became %v, %v", list, again, err)
		}
	})
}

func FuzzParseParam(f *testing.F) {
	f.Add("eParamID_XPT_Destination12_Status")
	f.Add("eParamID_XPT_Source61_Line_2")
	f.Add("eParamID_XPT_Destination012_Locked")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseParam(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseParam error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if p.String() != s {
			t.Fatalf("%q parsed as %+v, which is %q", s, p, p.String())
		}
		if p.Kind != ParamOther && (p.Port < 1 || p.Port > MaxPorts || p.Name != "") {
			t.Fatalf("%q parsed as %+v", s, p)
		}
		if (p.Kind == ParamDestinationLine || p.Kind == ParamSourceLine) != (p.Line == 1 || p.Line == 2) {
			t.Fatalf("%q parsed as %+v", s, p)
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	f.Add("action=set&configid=0&paramid=eParamID_XPT_Destination1_Status&value=3")
	f.Add("action=get&paramid=eParamID_XPT_DestinationAll_Status&alt=text-plain&configid=0")
	f.Add("action=set&paramid=eParamID_XPT_Source1_Line_1&value=Quad+1&value=2")
	f.Fuzz(func(t *testing.T, query string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		r, err := ParseRequest(q)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseRequest error %v does not wrap ErrMalformed", err)
			}
			return
		}
		q2, err := url.ParseQuery(r.Query())
		if err != nil {
			t.Fatalf("Query() of %+v: %v", r, err)
		}
		again, err := ParseRequest(q2)
		if err != nil || again != r {
			t.Fatalf("round trip: %+v became %q, then %+v, %v", r, r.Query(), again, err)
		}
	})
}

func FuzzPlainText(f *testing.F) {
	f.Add([]byte("<html><head><title>404 Not Found</title></head><body>Gone.</body></html>"), 200)
	f.Add([]byte("a\x00\xff\tb"), 3)
	f.Fuzz(func(t *testing.T, body []byte, limit int) {
		if limit < 0 || limit > 1<<20 {
			return
		}
		s := PlainText(body, limit)
		if !utf8.ValidString(s) || len(s) > max(limit, 4) || s != strings.TrimSpace(s) || strings.Contains(s, "  ") {
			t.Fatalf("PlainText(%q, %d) = %q", body, limit, s)
		}
		for _, r := range s {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("PlainText(%q, %d) = %q holds a control character", body, limit, s)
			}
		}
	})
}
