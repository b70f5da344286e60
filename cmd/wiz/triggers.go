package main

import (
	"fmt"
)

// TriggersCmd is `wiz triggers`.
type TriggersCmd struct {
	URL TriggerURLCmd `cmd:"" name:"url" help:"Print a webhook trigger's URL, and its secret when it has none yet (or --rotate)."`
}

// TriggerURLCmd is `wiz triggers url PIPELINE/NAME`.
type TriggerURLCmd struct {
	Trigger string `arg:"" help:"PIPELINE/NAME of a webhook trigger."`
	Rotate  bool   `help:"Make a new secret; the old one stops working."`
	Format  `embed:""`
}

// Run implements the command.
func (c *TriggerURLCmd) Run(env *Env) error {
	p, n, err := splitSchedule(c.Trigger)
	if err != nil {
		return err
	}
	api, err := env.Client()
	if err != nil {
		return err
	}
	u, secret, err := api.TriggerURL(p, n, c.Rotate)
	if err != nil {
		return err
	}
	if c.Data() {
		out := map[string]any{"url": u}
		if secret != "" {
			out["secret"] = secret
		}
		return c.Print(out)
	}
	fmt.Printf("url: %s\n", u)
	if secret != "" {
		fmt.Printf("secret: %s\n", secret)
	}
	return nil
}
