package gateway

// CachedKeys is how many API keys, found or not, the gateway holds.
func (g *Gateway) CachedKeys() int { return g.keys.keys.Len() }

// CachedDeployments is how many deployment lookups, found or not, the
// gateway holds.
func (g *Gateway) CachedDeployments() int { return g.deployments.Len() }
