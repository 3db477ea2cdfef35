package messages

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The event schema names exactly the fields of Event and ObjectReference,
// its notification reasons are the Go constants, and its example decodes
// into an Event that encodes back to the same JSON.
func TestEventSchemaMatchesType(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("schema/event.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties map[string]json.RawMessage `json:"properties"`
		Defs       struct {
			NotificationReasons struct {
				Enum []string `json:"enum"`
			} `json:"notificationReasons"`
		} `json:"$defs"`
		Examples []json.RawMessage `json:"examples"`
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	var involved struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(schema.Properties["involvedObject"], &involved); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		props map[string]json.RawMessage
		typ   reflect.Type
	}{
		{schema.Properties, reflect.TypeOf(Event{})},
		{involved.Properties, reflect.TypeOf(ObjectReference{})},
	} {
		var got, want []string
		for k := range tt.props {
			got = append(got, k)
		}
		for i := range tt.typ.NumField() {
			name, _, _ := strings.Cut(tt.typ.Field(i).Tag.Get("json"), ",")
			want = append(want, name)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: schema properties %v, Go fields %v", tt.typ.Name(), got, want)
		}
	}
	if want := []string{ReasonIssued, ReasonFailed, ReasonRevoked}; !slices.Equal(schema.Defs.NotificationReasons.Enum, want) {
		t.Errorf("notification reasons %v, Go constants %v", schema.Defs.NotificationReasons.Enum, want)
	}
	if len(schema.Examples) == 0 {
		t.Fatal("no example")
	}
	var ev Event
	dec := json.NewDecoder(strings.NewReader(string(schema.Examples[0])))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		t.Fatal(err)
	}
	if ev.Reason != ReasonIssued || ev.InvolvedObject.Kind != KindCertificate || ev.Count != 1 || ev.FirstTimestamp.IsZero() {
		t.Errorf("example decoded to %+v", ev)
	}
	back, _ := json.Marshal(ev)
	var a, b2 any
	_ = json.Unmarshal(schema.Examples[0], &a)
	_ = json.Unmarshal(back, &b2)
	if !reflect.DeepEqual(a, b2) {
		t.Errorf("example re-encodes as %s", back)
	}
	if got := EventSubject(KindCertificate, "default", "shop"); got != "acmeq.events.certificate.default.shop" {
		t.Errorf("EventSubject = %s, the schema documents acmeq.events.certificate.default.shop", got)
	}
}
