// Package scaling sizes a BudPrompt worker — how many tasks it runs at
// once (slots) and how many polls it keeps open (pollers), fixed or
// following load — and exports what an external scaler (KEDA, an HPA)
// reads to add or remove workers: the runs' task queue backlog.
//
// Every worker serves every deployment's runs from one task queue, so
// scaling is a property of the workers, not of a deployment: how the
// workers share themselves between deployments is the runs' fairness
// (runs.Priority).
package scaling

import (
	"errors"
	"fmt"

	"go.temporal.io/sdk/worker"
)

// Defaults of a Config's fields.
const (
	// DefaultMaxSlots is the SDK's own fixed size for each task kind.
	DefaultMaxSlots = 1000
	// DefaultMinSlots are the slots of each kind an autoscaled worker
	// hands out before it looks at CPU and memory.
	DefaultMinSlots = 5
	// DefaultFixedPollers is the SDK's own poller count per task kind.
	DefaultFixedPollers = 2
	// DefaultMaxPollers is the SDK's own ceiling for autoscaled pollers.
	DefaultMaxPollers = 100
	// DefaultTargetCPU and DefaultTargetMemory are the shares of the
	// worker's CPU and memory past which an autoscaled worker hands out no
	// more slots.
	DefaultTargetCPU    = 0.8
	DefaultTargetMemory = 0.8
)

// MinWorkflowSlots and MinPollers are the least the SDK accepts: with one
// workflow slot or poller a worker would poll only its sticky queue.
const (
	MinWorkflowSlots = 2
	MinPollers       = 2
)

// Config sizes a worker. Fixed (Autoscale off) is the SDK's default
// worker: MaxSlots slots and MaxPollers pollers for each task kind.
type Config struct {
	// Autoscale: each task kind's pollers scale with the server's hints
	// between 1 and MaxPollers (the SDK's poller autoscaling), and its
	// slots with the worker's CPU and memory use between MinSlots and
	// MaxSlots (the SDK's resource-based slot suppliers).
	Autoscale bool
	// MinSlots (Autoscale only) are the slots of each kind handed out
	// without looking at CPU and memory.
	MinSlots int
	// MaxSlots: each task kind's slots without Autoscale; their ceiling
	// with it.
	MaxSlots int
	// MaxPollers: each task kind's pollers without Autoscale; their
	// ceiling with it.
	MaxPollers int
	// TargetCPU and TargetMemory (Autoscale only), between 0 and 1: the
	// shares of CPU and memory (of the container when it has limits, of
	// the machine otherwise) past which no more slots are handed out.
	TargetCPU, TargetMemory float64
}

// Fixed is the worker the SDK makes by default, which Bud's was before it
// could scale: DefaultMaxSlots slots and DefaultFixedPollers pollers.
func Fixed() Config {
	return Config{MaxSlots: DefaultMaxSlots, MaxPollers: DefaultFixedPollers}
}

// Autoscaled is an autoscaled worker with the default bounds and targets.
func Autoscaled() Config {
	return Config{Autoscale: true, MinSlots: DefaultMinSlots, MaxSlots: DefaultMaxSlots, MaxPollers: DefaultMaxPollers,
		TargetCPU: DefaultTargetCPU, TargetMemory: DefaultTargetMemory}
}

// Check says what is wrong with c, naming its fields.
func (c Config) Check() error {
	var errs []error
	if c.MaxSlots < MinWorkflowSlots {
		errs = append(errs, fmt.Errorf("MaxSlots is %d; a worker needs at least %d", c.MaxSlots, MinWorkflowSlots))
	}
	if c.MaxPollers < MinPollers {
		errs = append(errs, fmt.Errorf("MaxPollers is %d; a worker needs at least %d", c.MaxPollers, MinPollers))
	}
	if !c.Autoscale {
		if c.MinSlots != 0 || c.TargetCPU != 0 || c.TargetMemory != 0 {
			errs = append(errs, errors.New("MinSlots, TargetCPU and TargetMemory size an autoscaled worker; a fixed one has MaxSlots slots"))
		}
		return errors.Join(errs...)
	}
	if c.MinSlots < 1 || c.MinSlots > c.MaxSlots {
		errs = append(errs, fmt.Errorf("MinSlots is %d; it must be between 1 and MaxSlots (%d)", c.MinSlots, c.MaxSlots))
	}
	for name, v := range map[string]float64{"TargetCPU": c.TargetCPU, "TargetMemory": c.TargetMemory} {
		if !(v > 0 && v <= 1) {
			errs = append(errs, fmt.Errorf("%s is %g; it must be a share above 0 and at most 1", name, v))
		}
	}
	return errors.Join(errs...)
}

// WorkerOptions are the options of a worker sized by c. sys reports the
// CPU and memory use an autoscaled worker's slots follow (NewSysInfo); a
// fixed worker does not read it. Eager activities stay off: an activity
// a worker runs at once on a slot it has free never waits in the task
// queue, so it goes ahead of every other deployment's waiting runs,
// whatever their fairness; through the queue it costs one poll more.
func (c Config) WorkerOptions(sys worker.SysInfoProvider) (worker.Options, error) {
	if err := c.Check(); err != nil {
		return worker.Options{}, err
	}
	opts := worker.Options{DisableEagerActivities: true}
	if !c.Autoscale {
		tuner, err := worker.NewFixedSizeTuner(worker.FixedSizeTunerOptions{
			NumWorkflowSlots: c.MaxSlots, NumActivitySlots: c.MaxSlots, NumLocalActivitySlots: c.MaxSlots, NumNexusSlots: c.MaxSlots,
		})
		if err != nil {
			return worker.Options{}, fmt.Errorf("scaling: fixed slots: %w", err)
		}
		opts.Tuner = tuner
		// Explicit, so that a namespace that enrolls workers into poller
		// autoscaling does not scale these.
		pollers := worker.NewPollerBehaviorSimpleMaximum(worker.PollerBehaviorSimpleMaximumOptions{MaximumNumberOfPollers: c.MaxPollers})
		opts.WorkflowTaskPollerBehavior, opts.ActivityTaskPollerBehavior, opts.NexusTaskPollerBehavior = pollers, pollers, pollers
		return opts, nil
	}
	if sys == nil {
		return worker.Options{}, errors.New("scaling: an autoscaled worker needs its CPU and memory use (a SysInfoProvider)")
	}
	ctl := worker.DefaultResourceControllerOptions()
	ctl.CpuTargetPercent, ctl.MemTargetPercent, ctl.InfoSupplier = c.TargetCPU, c.TargetMemory, sys
	controller := worker.NewResourceController(ctl)
	supplier := func(defaults worker.ResourceBasedSlotSupplierOptions, least int) (worker.SlotSupplier, error) {
		defaults.MinSlots, defaults.MaxSlots = max(c.MinSlots, least), c.MaxSlots
		return worker.NewResourceBasedSlotSupplier(controller, defaults)
	}
	wf, err := supplier(worker.DefaultWorkflowResourceBasedSlotSupplierOptions(), MinWorkflowSlots)
	if err != nil {
		return worker.Options{}, fmt.Errorf("scaling: workflow slots: %w", err)
	}
	act, err := supplier(worker.DefaultActivityResourceBasedSlotSupplierOptions(), 1)
	if err != nil {
		return worker.Options{}, fmt.Errorf("scaling: activity slots: %w", err)
	}
	local, err := supplier(worker.DefaultActivityResourceBasedSlotSupplierOptions(), 1)
	if err != nil {
		return worker.Options{}, fmt.Errorf("scaling: local activity slots: %w", err)
	}
	// Bud runs no Nexus operations and no sessions: their suppliers only
	// complete the tuner.
	nexus, err := worker.NewFixedSizeSlotSupplier(MinWorkflowSlots)
	if err != nil {
		return worker.Options{}, fmt.Errorf("scaling: nexus slots: %w", err)
	}
	tuner, err := worker.NewCompositeTuner(worker.CompositeTunerOptions{
		WorkflowSlotSupplier: wf, ActivitySlotSupplier: act, LocalActivitySlotSupplier: local,
		NexusSlotSupplier: nexus, SessionActivitySlotSupplier: act,
	})
	if err != nil {
		return worker.Options{}, fmt.Errorf("scaling: tuner: %w", err)
	}
	opts.Tuner = tuner
	pollers := worker.NewPollerBehaviorAutoscaling(worker.PollerBehaviorAutoscalingOptions{
		MinimumNumberOfPollers: 1, MaximumNumberOfPollers: c.MaxPollers,
	})
	opts.WorkflowTaskPollerBehavior, opts.ActivityTaskPollerBehavior, opts.NexusTaskPollerBehavior = pollers, pollers, pollers
	return opts, nil
}
