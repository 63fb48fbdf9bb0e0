package upstreamtest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/budhq/bud/upstreamtest"
)

// A stand-in on a real port answers in order with what was scripted, then
// with the default reply.
func ExampleListen() {
	s, err := upstreamtest.Listen("127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	s.Script(upstreamtest.Text("Scripted answer."))

	for range 2 {
		resp, err := http.Post(s.URL()+"/chat/completions", "application/json",
			strings.NewReader(`{"model":"Qwen/Qwen3-32B","messages":[{"role":"user","content":"Hi"}]}`))
		if err != nil {
			fmt.Println(err)
			return
		}
		var c struct {
			Choices []struct {
				Message struct {
					Content string `json:"content"`
				} `json:"message"`
			} `json:"choices"`
		}
		err = json.NewDecoder(resp.Body).Decode(&c)
		resp.Body.Close()
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(c.Choices[0].Message.Content)
	}
	// Output:
	// Scripted answer.
	// Hello from the stand-in.
}
