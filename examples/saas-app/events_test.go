package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/provision/webhook"
)

func getEvents(t *testing.T, url, token string) (int, eventPage) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p eventPage
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, p
}

func TestEventsCursorAndWebhook(t *testing.T) {
	var mu sync.Mutex
	var got []provision.Event
	var secret string
	secretSet := make(chan struct{})
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-secretSet
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(secret, r.Header.Get(webhook.SignatureHeader), body, time.Now(), time.Minute); err != nil {
			t.Errorf("webhook: %v", err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var ev provision.Event
		_ = json.Unmarshal(body, &ev)
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
	}))
	defer receiver.Close()

	lines := startAppLines(t, []string{"scim", "scim-token", "events", "events-token", "webhook-secret"},
		"-tenant", "acme", "-scim-token", "SECRET", "-webhook-url", receiver.URL+"/hook")
	secret = lines["webhook-secret"]
	close(secretSet)
	events, tok := lines["events"], lines["events-token"]
	if status, _ := getEvents(t, events, "wrong"); status != http.StatusUnauthorized {
		t.Fatalf("GET /events with a wrong token = %d", status)
	}
	for _, u := range []string{"ada", "grace"} {
		if status, _ := do(t, "POST", lines["scim"]+"/Users", "SECRET", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"`+u+`@acme.test","active":true}`); status != http.StatusCreated {
			t.Fatalf("create %s = %d", u, status)
		}
	}
	status, page := getEvents(t, events+"?after=0", tok)
	if status != http.StatusOK || len(page.Events) != 2 || page.Next != 2 || page.Events[0].Kind != provision.UserCreated || page.Events[1].User.UserName != "grace@acme.test" {
		t.Fatalf("GET /events?after=0 = %d %+v", status, page)
	}
	if _, page = getEvents(t, events+"?after=1&limit=10", tok); len(page.Events) != 1 || page.Events[0].Seq != 2 {
		t.Fatalf("GET /events?after=1 = %+v", page)
	}
	if _, page = getEvents(t, events+"?after=2", tok); len(page.Events) != 0 || page.Next != 2 {
		t.Fatalf("GET /events?after=2 = %+v", page)
	}
	if status, _ = getEvents(t, events+"?after=x", tok); status != http.StatusBadRequest {
		t.Fatalf("GET /events?after=x = %d", status)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook got %d events, want 2", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got[0].Seq != 1 || got[1].Seq != 2 || got[1].User.UserName != "grace@acme.test" {
		t.Fatalf("webhook got %+v", got)
	}
}
