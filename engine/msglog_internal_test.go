package engine

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/nudge-study/nudge/storage"
)

// JSON logs name an outbox message's id message_id: "message" reads as the
// text, and log tools confuse it with logrus's own "msg".
func TestMessageLogFieldIsMessageID(t *testing.T) {
	var buf bytes.Buffer
	l := logrus.New()
	l.SetOutput(&buf)
	l.SetFormatter(&logrus.JSONFormatter{})
	e := &Engine{Log: l}
	e.msgLog(storage.Message{ID: 42, Rule: "remind", Record: "7", To: "+14155550123"}).Info("sms sent")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if line["message_id"] != float64(42) {
		t.Errorf("message_id = %v in %s", line["message_id"], buf.String())
	}
	if _, ok := line["message"]; ok {
		t.Errorf("a field named message in %s", buf.String())
	}
	if line["to"] == "+14155550123" {
		t.Errorf("full number logged: %s", buf.String())
	}
}
