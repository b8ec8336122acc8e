package wire

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseParam(t *testing.T) {
	for in, want := range map[string]Param{
		"eParamID_XPT_Destination1_Status":   {Kind: ParamDestinationStatus, Port: 1},
		"eParamID_XPT_Destination64_Status":  {Kind: ParamDestinationStatus, Port: 64},
		"eParamID_XPT_Destination256_Status": {Kind: ParamDestinationStatus, Port: 256},
		"eParamID_XPT_Destination4_Locked":   {Kind: ParamDestinationLocked, Port: 4},
		"eParamID_XPT_Destination3_Line_2":   {Kind: ParamDestinationLine, Port: 3, Line: 2},
		"eParamID_XPT_Source61_Line_1":       {Kind: ParamSourceLine, Port: 61, Line: 1},
		"eParamID_XPT_DestinationAll_Status": {Kind: ParamOther, Name: "eParamID_XPT_DestinationAll_Status"},
		"eParamID_XPT_Source3_Status":        {Kind: ParamOther, Name: "eParamID_XPT_Source3_Status"},
		"eParamID_NumberOfSources":           {Kind: ParamOther, Name: "eParamID_NumberOfSources"},
		"eParamID_Salvo2":                    {Kind: ParamOther, Name: "eParamID_Salvo2"},
	} {
		got, err := ParseParam(in)
		if err != nil || got != want {
			t.Errorf("ParseParam(%q) = %+v, %v; want %+v", in, got, err, want)
			continue
		}
		if got.String() != in {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), in)
		}
	}
	for _, in := range []string{
		"", "eParamID_", "paramid", "eParamID_XPT Destination1_Status", "eParamID_XPT_Destination1_Status&value=2",
		"eParamID_XPT_Destination0_Status", "eParamID_XPT_Destination01_Status", "eParamID_XPT_Destination257_Status",
		"eParamID_XPT_Destination99999999999_Status", "eParamID_XPT_Source1_Line_3", "eParamID_XPT_Source1_Line_0",
		"eParamID_XPT_Destination1_Line_01", "eParamID_" + strings.Repeat("x", MaxParamID),
	} {
		if p, err := ParseParam(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseParam(%q) = %+v, %v; want ErrMalformed", in, p, err)
		}
	}
	if DestinationStatus(3) != "eParamID_XPT_Destination3_Status" || SourceLine(2, 1) != "eParamID_XPT_Source2_Line_1" ||
		DestinationLine(5, 2) != "eParamID_XPT_Destination5_Line_2" || DestinationLocked(7) != "eParamID_XPT_Destination7_Locked" {
		t.Error("parameter id helpers")
	}
}

func TestRequest(t *testing.T) {
	set := Request{Action: ActionSet, ParamID: "eParamID_XPT_Source61_Line_1", Value: "Quad 1 & ümlaut"}
	if got, want := set.Query(), "action=set&configid=0&paramid=eParamID_XPT_Source61_Line_1&value=Quad+1+%26+%C3%BCmlaut"; got != want {
		t.Errorf("Query() = %q, want %q", got, want)
	}
	get := Request{Action: ActionGet, ParamID: "eParamID_XPT_Destination1_Status", Value: "ignored"}
	if got, want := get.Query(), "action=get&configid=0&paramid=eParamID_XPT_Destination1_Status"; got != want {
		t.Errorf("Query() = %q, want %q", got, want)
	}
	for _, r := range []Request{set, {Action: ActionGet, ParamID: "eParamID_KumoProductID"}, {Action: ActionSet, ParamID: "eParamID_XPT_Destination1_Line_1", Value: ""}} {
		q, err := url.ParseQuery(r.Query())
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseRequest(q)
		if err != nil || got != r {
			t.Errorf("ParseRequest(%q) = %+v, %v; want %+v", r.Query(), got, err, r)
		}
	}
	for _, q := range []string{
		"", "action=connect&configid=0", "action=get", "action=get&paramid=eParamID_A&value=1",
		"action=set&paramid=eParamID_A", "action=set&paramid=bogus&value=1", "action=set&paramid=eParamID_A&value=%FF",
		"action=set&paramid=eParamID_A&value=" + strings.Repeat("x", MaxValue+1),
	} {
		v, _ := url.ParseQuery(q)
		if r, err := ParseRequest(v); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseRequest(%q) = %+v, %v; want ErrMalformed", Clip(q, 80), r, err)
		}
	}
}

func TestParseReply(t *testing.T) {
	for in, want := range map[string]Reply{
		// The documented shape.
		`{"paramid":"1","name":"eParamID_KumoProductID","value":"3","value_name":"KUMO 32x32 Matrix"}`: {ParamID: "1", Name: "eParamID_KumoProductID", Value: "3", ValueName: "KUMO 32x32 Matrix", HasValue: true},
		// Numbers as numbers, white space, an unknown member.
		" {\"paramid\":17,\"name\":\"eParamID_NumberOfSources\",\"value\":16,\"extra\":[1]}\r\n": {ParamID: "17", Name: "eParamID_NumberOfSources", Value: "16", HasValue: true},
		// A salvo's value is an object.
		`{"name":"eParamID_Salvo2","value":{"index":"2", "salvodata":[3,0]}}`: {Name: "eParamID_Salvo2", Value: `{"index":"2","salvodata":[3,0]}`, HasValue: true},
		`{"value":""}`:   {HasValue: true},
		`{"value":null}`: {},
		`{}`:             {},
		`{"paramid":"1","name":"eParamID_X","value":"1","value_name":"","error":"0"}`:              {ParamID: "1", Name: "eParamID_X", Value: "1", HasValue: true, Error: "0"},
		`{"name":"eParamID_X","value":"1","error":"Invalid value"}`:                                {Name: "eParamID_X", Value: "1", HasValue: true, Error: "Invalid value"},
		`{"value":true,"error":false}`:                                                             {Value: "true", HasValue: true, Error: "false"},
		"{\"name\":\"\\u00fcml\\u00e4ut \xff\",\"value\":\"a\\nb\"}":                               {Name: "ümläut \uFFFD", Value: "a\nb", HasValue: true},
		`{"name":"eParamID_XPT_Destination1_Line_1","value":"<b>&amp;</b>","value_name":"\u2028"}`: {Name: "eParamID_XPT_Destination1_Line_1", Value: "<b>&amp;</b>", ValueName: "\u2028", HasValue: true},
	} {
		got, err := ParseReply([]byte(in))
		if err != nil || got != want {
			t.Errorf("ParseReply(%q) = %+v, %v\nwant %+v", in, got, err, want)
			continue
		}
		again, err := ParseReply(got.Marshal())
		if err != nil || again != got {
			t.Errorf("round trip of %q: %+v, %v", got.Marshal(), again, err)
		}
	}
	for _, in := range []string{
		"", "   ", "[]", `"3"`, "null", "{", `{"value":}`, `{"value":"3"} {}`, `{"value":"3"}x`, "<html><head><title>404 Not Found</title></head></html>",
		`{"name":["a"],"value":"1"}` + strings.Repeat(" ", MaxBody),
	} {
		if r, err := ParseReply([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseReply(%q) = %+v, %v; want ErrMalformed", Clip(in, 80), r, err)
		}
	}
}

func TestReplyFailedAndPort(t *testing.T) {
	for e, failed := range map[string]bool{"": false, "0": false, " false ": false, "FALSE": false, "1": true, "Invalid value": true, "true": true} {
		if got := (Reply{Error: e}).Failed(); got != failed {
			t.Errorf("Failed() with error %q = %v", e, got)
		}
	}
	r := Reply{Name: "eParamID_XPT_Destination1_Status", Value: " 7 ", HasValue: true}
	if n, err := r.Port(16); err != nil || n != 7 {
		t.Errorf("Port = %d, %v", n, err)
	}
	for _, bad := range []Reply{{Value: "7"}, {Value: "17", HasValue: true}, {Value: "-1", HasValue: true}, {Value: "x", HasValue: true}, {Value: "1.5", HasValue: true}} {
		if n, err := bad.Port(16); !errors.Is(err, ErrMalformed) {
			t.Errorf("%+v.Port(16) = %d, %v", bad, n, err)
		}
	}
}

func TestParseRoutingList(t *testing.T) {
	for in, want := range map[string][]int{
		"[1,2,4,4,5,6,7,8,10,10,11,12,13,15,15,16]": {1, 2, 4, 4, 5, 6, 7, 8, 10, 10, 11, 12, 13, 15, 15, 16},
		" [ 16, 1, 9, 0 ]\n":                        {16, 1, 9, 0},
		"[]":                                        {},
	} {
		got, err := ParseRoutingList([]byte(in))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseRoutingList(%q) = %v, %v; want %v", in, got, err, want)
		}
		if again, err := ParseRoutingList(FormatRoutingList(got)); err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("round trip of %q: %v, %v", FormatRoutingList(got), again, err)
		}
	}
	if _, err := ParseRoutingList([]byte(" {}\n")); !errors.Is(err, ErrNoRoutingList) {
		t.Errorf("{}: %v, want ErrNoRoutingList", err)
	}
	for _, in := range []string{"", "{", `{"a":1}`, "[1,", "[1,x]", "[1.5]", "[-1]", "[1e1]", "[257]", "[1][2]", `["1"]`, "[null]",
		"[" + strings.Repeat("1,", MaxPorts) + "1]"} {
		if got, err := ParseRoutingList([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseRoutingList(%q) = %v, %v; want ErrMalformed", Clip(in, 80), got, err)
		}
	}
}

func TestPlainTextAndStatusError(t *testing.T) {
	page := "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head><title>404 Not Found</title></head><body>\nThe document requested was not found on this server.\n</body></html>\n"
	if got, want := PlainText([]byte(page), 200), "404 Not Found The document requested was not found on this server."; got != want {
		t.Errorf("PlainText = %q, want %q", got, want)
	}
	if got := PlainText([]byte("a\x00b\x1b[31mc\xffd"), 200); got != "a b [31mc\uFFFDd" {
		t.Errorf("PlainText = %q", got)
	}
	long := PlainText([]byte(strings.Repeat("ü", 100)), 21)
	if !utf8.ValidString(long) || len(long) > 21 || !strings.HasSuffix(long, "…") {
		t.Errorf("PlainText cut = %q", long)
	}
	e := &StatusError{Code: 403, Status: "403 Forbidden", Text: "Forbidden"}
	if e.Error() != "HTTP 403 Forbidden: Forbidden" {
		t.Errorf("Error() = %q", e)
	}
	if e := (&StatusError{Code: 500, Status: "500 Internal Server Error"}); e.Error() != "HTTP 500 Internal Server Error" {
		t.Errorf("Error() = %q", e)
	}
}

func TestLabel(t *testing.T) {
	for _, tc := range [][3]string{{"CAM 1", "Stage L", "CAM 1 Stage L"}, {"CAM 1", "", "CAM 1"}, {"", "Rec A", "Rec A"}, {" ", " ", ""}, {" PGM ", " A", "PGM A"}} {
		if got := Label(tc[0], tc[1]); got != tc[2] {
			t.Errorf("Label(%q, %q) = %q, want %q", tc[0], tc[1], got, tc[2])
		}
	}
}
