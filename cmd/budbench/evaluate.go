package main

import (
	"context"
	"fmt"
	"time"
)

// runEvaluate measures an evaluation on `bud dev` with the stand-in model:
// a dataset of rows run against candidates (each a text prompt), every run
// a child PromptRun scored from its record. It prints runs per second and
// the bud process's resident memory before the evaluation, its peak while
// it ran (sampled every 100 ms) and after it ended, and again after a
// second evaluation of the same size, so that memory that grows with runs
// shows as a second peak above the first.
func runEvaluate(ctx context.Context, budPath, serverURL string, rows, candidates, parallelism, rounds int) error {
	up, err := standIn()
	if err != nil {
		return err
	}
	defer up.Close()
	dbURL, dropDB, err := createDatabase(ctx, serverURL)
	if err != nil {
		return err
	}
	defer dropDB()
	dev, err := startDev(ctx, budPath, dbURL)
	if err != nil {
		return err
	}
	defer dev.stop()

	p, err := dev.api("POST", "/api/projects", map[string]any{"name": "bench"})
	if err != nil {
		return err
	}
	base := "/api/projects/" + p["id"].(string)
	if _, err := dev.api("POST", base+"/deployments", map[string]any{"name": "bench", "upstream": map[string]any{"base_url": up.URL(), "model": "stand-in"}}); err != nil {
		return err
	}
	list := make([]any, rows)
	for i := range list {
		list[i] = map[string]any{"text": fmt.Sprintf("row %d", i), "checks": []any{
			map[string]any{"type": "contains", "value": "stand-in"},
			map[string]any{"type": "cel", "expression": "size(text) > 10"},
		}}
	}
	d, err := dev.api("POST", base+"/datasets", map[string]any{"name": "bench", "rows": list})
	if err != nil {
		return err
	}
	cands := make([]any, candidates)
	for i := range cands {
		cands[i] = map[string]any{"document": map[string]any{
			"deployment":    "bench",
			"system_prompt": fmt.Sprintf("Candidate %d.", i),
			"messages":      []any{map[string]any{"role": "user", "content": "{{ input }}"}},
		}}
	}
	pid := dev.cmd.Process.Pid
	fmt.Printf("budbench evaluate: %d rows x %d candidates, parallelism %d, on bud dev with the stand-in, %d cores\n", rows, candidates, parallelism, runtimeCPUs())
	if l := loadAverage(); l != "" {
		fmt.Printf("load average (1 min) before: %s\n", l)
	}
	for round := 1; round <= rounds; round++ {
		before := processMemory(pid).rss
		cpuBefore := processCPU(pid)
		start := time.Now()
		ev, err := dev.api("POST", "/api/datasets/"+d["id"].(string)+"/evaluations", map[string]any{"candidates": cands, "parallelism": parallelism})
		if err != nil {
			return err
		}
		peak := before
		var status string
		for {
			if rss := processMemory(pid).rss; rss > peak {
				peak = rss
			}
			got, err := dev.api("GET", "/api/evaluations/"+ev["id"].(string), nil)
			if err != nil {
				return err
			}
			if status = got["status"].(string); status != "running" {
				ev = got
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
		elapsed := time.Since(start)
		cpu := processCPU(pid) - cpuBefore
		after := processMemory(pid).rss
		runs := rows * candidates
		fmt.Printf("round %d: %s, %d runs in %.1f s: %.1f runs/s; bud RSS before %d MiB, peak %d MiB, after %d MiB\n",
			round, status, runs, elapsed.Seconds(), float64(runs)/elapsed.Seconds(), before>>20, peak>>20, after>>20)
		// What bud itself spent, which the rest of a busy machine does not
		// change much: runs per CPU second is the throughput bud alone
		// would reach on one idle core.
		if cpu > 0 {
			fmt.Printf("  bud used %.1f s of CPU: %.1f runs per CPU second\n", cpu.Seconds(), float64(runs)/cpu.Seconds())
		}
		if card, ok := ev["scorecard"].(map[string]any); ok {
			for _, c := range card["candidates"].([]any) {
				c := c.(map[string]any)
				o := c["overall"].(map[string]any)
				lat := c["latency_ms"].(map[string]any)
				fmt.Printf("  candidate %v: %v/%v passed, latency p50 %v ms p95 %v ms, %v model calls\n", c["candidate"], o["passed"], o["runs"], lat["p50"], lat["p95"], c["model_calls"])
			}
		}
		if status != "completed" {
			return fmt.Errorf("the evaluation ended %s", status)
		}
	}
	return nil
}
