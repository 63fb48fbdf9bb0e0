package app

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/prompt"
)

// Which versions of a prompt deployed into another project are copied.
const (
	copyChosen = "chosen" // the deployed version only, as the copy's version 1
	copyAll    = "all"    // every version, keeping numbers, notes and the default
)

// copyInput is the "copy" of a prompt deployment's body: deploying a
// prompt of another project copies it into the deployment's project first.
type copyInput struct {
	Versions string `json:"versions"`
	// Name is the copy's name in the target project; the source's by
	// default.
	Name *string `json:"name"`
}

// copiedVersion is one version of the copy, its document mapped to the
// target project and validated there.
type copiedVersion struct {
	version  int32 // the source's number
	note     string
	document []byte
	settings bud.Settings
}

// promptCopy is everything a copy stores, prepared before its transaction.
type promptCopy struct {
	meta     promptInput
	versions []copiedVersion
	// deployed is the index in versions of the version the deployment
	// serves; pin is the copy's version the deployment is pinned to, nil
	// when it follows the copy's default.
	deployed int
	pin      *int32
	def      int32 // the copy's default version
}

// checkCopyInput checks the copy fields of a prompt deployment's body that
// need nothing stored.
func checkCopyInput(p *bud.Problems, in deploymentInput) {
	if in.Copy == nil {
		if in.DeploymentMap != nil {
			p.Add("deployment_map", "is only for copying a prompt of another project (with copy)")
		}
		if in.ConnectionMap != nil {
			p.Add("connection_map", "is only for copying a prompt of another project (with copy)")
		}
		return
	}
	if in.Prompt != nil {
		p.Add("copy", "is only for deploying an existing prompt of another project (prompt_id)")
	}
	switch in.Copy.Versions {
	case "", copyChosen, copyAll:
	default:
		p.Add("copy.versions", "must be %q or %q", copyChosen, copyAll)
	}
	if in.Copy.Name != nil {
		bud.CheckName(p, "copy.name", *in.Copy.Name)
	}
	for _, m := range []struct {
		field string
		names map[string]string
	}{{"deployment_map", in.DeploymentMap}, {"connection_map", in.ConnectionMap}} {
		for src, dst := range m.names {
			if dst == "" {
				p.Add(m.field+"."+src, "must name one of this project's")
			}
		}
	}
}

// preparePromptCopy reads the versions of src to copy into project target,
// maps the model deployments and connections they name through the
// request's maps (a name not mapped keeps its name), and checks that every
// one exists in target: each that does not is named, as a field of its map,
// in one 422. Each mapped document is then validated in target as a new
// document would be.
func (s *server) preparePromptCopy(ctx context.Context, src dbsqlc.Prompt, target uuid.UUID, in deploymentInput) (promptCopy, error) {
	c := promptCopy{meta: promptInput{Name: src.Name, Description: src.Description, Tags: src.Tags}}
	if in.Copy.Name != nil {
		c.meta.Name = *in.Copy.Name
	}
	deployed := src.DefaultVersion
	if in.Version != nil {
		deployed = *in.Version
	}
	numbers := []int32{deployed}
	if in.Copy.Versions == copyAll {
		if deployed > src.LatestVersion {
			return c, fieldError("version", "is not a saved version of the prompt")
		}
		numbers = numbers[:0]
		for n := int32(1); n <= src.LatestVersion; n++ {
			numbers = append(numbers, n)
		}
	}
	type source struct {
		row dbsqlc.PromptVersion
		doc *prompt.Document
	}
	sources := make([]source, 0, len(numbers))
	for _, n := range numbers {
		v, raw, err := s.document(ctx, src.ID, n)
		if err != nil {
			if n == deployed && bud.ErrorCode(err) == bud.ENOTFOUND {
				return c, fieldError("version", "is not a saved version of the prompt")
			}
			return c, err
		}
		doc, err := prompt.Parse(raw)
		if err != nil {
			return c, bud.Internal("parse stored prompt document", err)
		}
		sources = append(sources, source{v, doc})
	}

	// The names each version uses, and where they lead in target.
	deployments := map[string]bool{}
	connNames := map[string]string{} // source connection id → its name (the map's key)
	for _, sv := range sources {
		deployments[sv.doc.Deployment] = true
		if d := sv.doc.Settings.ValidationDeployment; d != "" {
			deployments[d] = true
		}
		for _, t := range sv.doc.Tools {
			if t.Type != prompt.ToolConnection || connNames[t.ConnectionID] != "" {
				continue
			}
			connNames[t.ConnectionID] = t.ConnectionID // a connection since deleted is known by its id
			if id, err := uuid.Parse(t.ConnectionID); err == nil {
				row, err := s.q.GetConnection(ctx, dbsqlc.GetConnectionParams{ProjectID: src.ProjectID, ID: id})
				switch {
				case err == nil:
					connNames[t.ConnectionID] = row.Name
				case !db.IsNoRows(err):
					return c, bud.Internal("get source connection", err)
				}
			}
		}
	}
	var p bud.Problems
	for key := range in.DeploymentMap {
		if !deployments[key] {
			p.Add("deployment_map."+key, "the copied versions use no model deployment of this name")
		}
	}
	used := map[string]bool{}
	for _, name := range connNames {
		used[name] = true
	}
	for key := range in.ConnectionMap {
		if !used[key] {
			p.Add("connection_map."+key, "the copied versions use no connection of this name")
		}
	}
	deploymentTo := map[string]string{}
	for _, name := range sortedKeys(deployments) {
		dst, mapped := in.DeploymentMap[name]
		if !mapped {
			dst = name
		}
		deploymentTo[name] = dst
		_, err := s.q.GetDeploymentByName(ctx, dbsqlc.GetDeploymentByNameParams{ProjectID: target, Name: dst})
		switch {
		case err == nil:
		case !db.IsNoRows(err):
			return c, bud.Internal("get target deployment", err)
		case mapped:
			p.Add("deployment_map."+name, "names %q, which is not a deployment of this project", dst)
		default:
			p.Add("deployment_map."+name, "the prompt's model deployment %q is not in this project; map it to one of this project's", name)
		}
	}
	connectionTo := map[string]string{} // source connection id → target connection id
	for _, id := range sortedKeys(connNames) {
		key := connNames[id]
		dst, mapped := in.ConnectionMap[key]
		if !mapped {
			dst = key
		}
		row, err := s.q.GetConnectionByName(ctx, dbsqlc.GetConnectionByNameParams{ProjectID: target, Name: dst})
		switch {
		case err == nil:
			connectionTo[id] = row.ID.String()
		case !db.IsNoRows(err):
			return c, bud.Internal("get target connection", err)
		case mapped:
			p.Add("connection_map."+key, "names %q, which is not a connection of this project", dst)
		default:
			p.Add("connection_map."+key, "the prompt's connection %q is not in this project; map it to one of this project's", key)
		}
	}
	if len(p) > 0 {
		return c, &bud.Error{Code: bud.EUNPROCESSABLE,
			Message: "the prompt's model deployments and connections must exist in this project: " + p.String(), Fields: p}
	}

	for i, sv := range sources {
		// A copy of the document to map, so that sv.doc stays the source
		// whose rule translations the copy reuses.
		raw, err := json.Marshal(sv.doc)
		if err != nil {
			return c, bud.Internal("encode prompt document", err)
		}
		doc, err := prompt.Parse(raw)
		if err != nil {
			return c, bud.Internal("parse stored prompt document", err)
		}
		doc.Deployment = deploymentTo[doc.Deployment]
		if d := doc.Settings.ValidationDeployment; d != "" {
			doc.Settings.ValidationDeployment = deploymentTo[d]
		}
		for j := range doc.Tools {
			if doc.Tools[j].Type == prompt.ToolConnection {
				doc.Tools[j].ConnectionID = connectionTo[doc.Tools[j].ConnectionID]
			}
		}
		if raw, err = json.Marshal(doc); err != nil {
			return c, bud.Internal("encode prompt document", err)
		}
		prefix := "source.versions[" + strconv.Itoa(int(sv.row.Version)) + "].document."
		parsed, canonical, err := s.parseDocument(ctx, target, raw, prefix, sv.doc)
		if err != nil {
			return c, err
		}
		settings := parsed.Settings.Settings
		settings.Autoscale = false // as deployedSettings reads it
		c.versions = append(c.versions, copiedVersion{version: sv.row.Version, note: sv.row.Note, document: canonical, settings: settings})
		if sv.row.Version == deployed {
			c.deployed = i
		}
	}
	c.def = 1
	if in.Copy.Versions == copyAll {
		c.def = src.DefaultVersion
		c.pin = in.Version
	}
	return c, nil
}

// createCopyTx stores the copy as a new prompt of project target in tx,
// its versions in order.
func (s *server) createCopyTx(ctx context.Context, tx pgx.Tx, target uuid.UUID, c promptCopy) (dbsqlc.Prompt, error) {
	tags := c.meta.Tags
	if tags == nil {
		tags = []string{}
	}
	row, err := dbsqlc.New(tx).CreatePrompt(ctx, dbsqlc.CreatePromptParams{ProjectID: target, Name: c.meta.Name, Description: c.meta.Description, Tags: tags})
	if err != nil {
		if isForeignKeyViolation(err) {
			return row, notFound("project")
		}
		err = saveError(err, "copy prompt", promptNameConstraint, "prompt", c.meta.Name)
		if bud.ErrorCode(err) == bud.ECONFLICT {
			return row, &bud.Error{Code: bud.ECONFLICT, Message: fmt.Sprintf("this project already has a prompt named %q; give the copy another name", c.meta.Name),
				Fields: map[string]string{"copy.name": "is already taken in this project"}}
		}
		return row, err
	}
	for i, v := range c.versions {
		n := int32(i + 1)
		if row, _, err = s.saveVersion(ctx, tx, row, v.document, v.note, i == 0 || n == c.def); err != nil {
			return row, err
		}
	}
	return row, nil
}
