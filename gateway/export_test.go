package gateway

import (
	"context"

	"github.com/google/uuid"

	"github.com/budhq/bud"
	"github.com/budhq/bud/admission"
)

// CachedKeys is how many API keys, found or not, the gateway holds.
func (g *Gateway) CachedKeys() int { return g.keys.keys.Len() }

// CachedDeployments is how many deployment lookups, found or not, the
// gateway holds.
func (g *Gateway) CachedDeployments() int { return g.deployments.Len() }

// DeploymentSettings are the settings of the project's deployment name as
// the gateway holds them now, read from the database on a miss.
func (g *Gateway) DeploymentSettings(ctx context.Context, project uuid.UUID, name string) (bud.Settings, error) {
	d, err := g.deployments.Get(ctx, project, name)
	if err != nil {
		return bud.Settings{}, err
	}
	return d.Settings, nil
}

// KeyRate is the rate limit of the key secret as the gateway holds it now.
func (g *Gateway) KeyRate(ctx context.Context, secret string) (admission.Rate, error) {
	e, err := g.keys.key(ctx, hashSecret(secret))
	if err != nil {
		return admission.Rate{}, err
	}
	return e.rate, nil
}
