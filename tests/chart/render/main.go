// Command aurora-chart-render renders a Helm chart the way `helm template` does, for the
// tests of chart/agent/ and chart/server/. It STANDS IN FOR `helm template`: Helm itself
// is not packaged for Debian 12 and nothing but Debian and npm packages may be installed
// here.
//
// It is built from Debian's Go packages only (GOPATH mode, /usr/share/gocode), with the
// same libraries Helm 3 renders with:
//   - text/template from the Go standard library (Helm's template engine),
//   - github.com/Masterminds/sprig/v3 (Helm's function library; Debian ships 3.2.3),
//   - sigs.k8s.io/yaml (Helm's YAML: values parsing, toYaml/fromYaml, manifest heads),
//   - github.com/xeipuuv/gojsonschema (Helm 3.0-3.17's values.schema.json validator),
//   - github.com/Masterminds/semver/v3 (kubeVersion constraints, semverCompare).
//
// What it reproduces from Helm 3 (pkg/engine, pkg/chartutil, pkg/releaseutil,
// pkg/action; the code paths are named next to each function):
//   - chart loading: Chart.yaml (apiVersion v1/v2, name, SemVer version), values.yaml,
//     values.schema.json, every file under templates/, .helmignore (simple globs);
//   - values: -f files merged left to right (cli/values mergeMaps), then coalesced with the
//     chart's values.yaml (chartutil.CoalesceValues: maps merge, user values win, null
//     deletes a default), then validated against values.schema.json;
//   - the chart's kubeVersion constraint is checked against --kube-version;
//   - the template objects .Values .Release .Chart .Capabilities .Files .Template
//     .Subcharts, with Helm's field names;
//   - functions: all of Sprig except env/expandenv, plus include, tpl, required, fail,
//     toYaml, mustToYaml, fromYaml, fromYamlArray, toJson, mustToJson, fromJson,
//     fromJsonArray, lookup (always an empty map, as in `helm template`),
//     getHostByName (empty, as without --enable-dns);
//   - rendering: one template set, files executed in Helm's order, names starting with
//     `_` are only definitions, "<no value>" erased, missingkey=zero, `required`/`fail`
//     messages reported as "execution error at (file:line:col): message";
//   - output: NOTES.txt is not a manifest (printed separately with --notes), rendered
//     files are split on `---`, empty and comment-only documents are dropped, every
//     document needs a parseable apiVersion/kind head, documents are ordered by Helm's
//     InstallOrder and printed as "---\n# Source: <chart>/templates/<file>\n<doc>".
//
// Not reproduced (the chart does not use them): subcharts and dependencies (refused),
// library charts, hooks (hook documents are printed like any other), --set flags,
// toToml/fromToml, .Files.Glob/AsConfig/AsSecrets, Helm's post-renderers.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/ioutil"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/semver"
	"github.com/Masterminds/sprig"
	"github.com/xeipuuv/gojsonschema"
	"sigs.k8s.io/yaml"
)

const standInNote = "aurora-chart-render: a stand-in for `helm template` (Go text/template + Sprig + sigs.k8s.io/yaml, Helm 3 semantics)"

// Metadata mirrors helm.sh/helm/v3/pkg/chart.Metadata (field names are what templates use).
type Metadata struct {
	Name         string            `json:"name,omitempty"`
	Home         string            `json:"home,omitempty"`
	Sources      []string          `json:"sources,omitempty"`
	Version      string            `json:"version,omitempty"`
	Description  string            `json:"description,omitempty"`
	Keywords     []string          `json:"keywords,omitempty"`
	Maintainers  []interface{}     `json:"maintainers,omitempty"`
	Icon         string            `json:"icon,omitempty"`
	APIVersion   string            `json:"apiVersion,omitempty"`
	Condition    string            `json:"condition,omitempty"`
	Tags         string            `json:"tags,omitempty"`
	AppVersion   string            `json:"appVersion,omitempty"`
	Deprecated   bool              `json:"deprecated,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	KubeVersion  string            `json:"kubeVersion,omitempty"`
	Dependencies []interface{}     `json:"dependencies,omitempty"`
	Type         string            `json:"type,omitempty"`
}

// chartMeta is what .Chart is in Helm's engine (recAllTpls): the metadata plus IsRoot.
type chartMeta struct {
	Metadata
	IsRoot bool
}

// KubeVersion / VersionSet / Capabilities mirror pkg/chartutil/capabilities.go.
type KubeVersion struct {
	Version string
	Major   string
	Minor   string
}

func (kv *KubeVersion) String() string     { return kv.Version }
func (kv *KubeVersion) GitVersion() string { return kv.Version }

type VersionSet []string

func (v VersionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

type BuildInfo struct {
	Version      string `json:"version,omitempty"`
	GitCommit    string `json:"git_commit,omitempty"`
	GitTreeState string `json:"git_tree_state,omitempty"`
	GoVersion    string `json:"go_version,omitempty"`
}

type Capabilities struct {
	KubeVersion KubeVersion
	APIVersions VersionSet
	HelmVersion BuildInfo
}

// Files mirrors the read part of pkg/engine/files.go.
type Files map[string][]byte

func (f Files) GetBytes(name string) []byte { return f[name] }
func (f Files) Get(name string) string      { return string(f[name]) }
func (f Files) Lines(name string) []string {
	if f[name] == nil {
		return []string{}
	}
	s := string(f[name])
	if s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	return strings.Split(s, "\n")
}

type chart struct {
	Meta      Metadata
	Values    map[string]interface{}
	Schema    []byte
	Templates map[string]string // "templates/x.yaml" -> text
	Files     Files
}

func die(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "Error: "+format+"\n", a...)
	os.Exit(1)
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var valueFiles, apiVersions multiFlag
	name := flag.String("name", "release-name", "release name (helm template NAME)")
	namespace := flag.String("namespace", "default", "release namespace")
	kubeVersion := flag.String("kube-version", "v1.30.0", "Kubernetes version for .Capabilities and the chart's kubeVersion check")
	flag.Var(&valueFiles, "f", "values file (repeatable; later files win)")
	flag.Var(&apiVersions, "api-versions", "extra API version for .Capabilities.APIVersions (repeatable)")
	notesOut := flag.String("notes", "", "write the rendered NOTES.txt to this file")
	jsonOut := flag.String("json", "", "write the manifests as a JSON array of {source, object} (objects converted with sigs.k8s.io/yaml.YAMLToJSONStrict, as the Kubernetes API machinery reads YAML)")
	valuesOut := flag.String("values-out", "", "write the coalesced values (what .Values is) as JSON")
	quiet := flag.Bool("q", false, "do not print the manifests on stdout")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "%s\nusage: aurora-chart-render [flags] CHART_DIR\n", standInNote)
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}

	ch, err := loadChart(flag.Arg(0))
	if err != nil {
		die("%v", err)
	}
	caps, err := capabilities(*kubeVersion, apiVersions)
	if err != nil {
		die("%v", err)
	}
	// action.Install: the chart's kubeVersion constraint (chartutil.IsCompatibleRange).
	if ch.Meta.KubeVersion != "" {
		c, err := semver.NewConstraint(ch.Meta.KubeVersion)
		if err != nil {
			die("chart %s: invalid kubeVersion %q: %v", ch.Meta.Name, ch.Meta.KubeVersion, err)
		}
		v, err := semver.NewVersion(caps.KubeVersion.Version)
		if err != nil || !c.Check(v) {
			die("chart requires kubeVersion: %s which is incompatible with Kubernetes %s", ch.Meta.KubeVersion, caps.KubeVersion.Version)
		}
	}

	user := map[string]interface{}{}
	for _, f := range valueFiles {
		data, err := ioutil.ReadFile(f)
		if err != nil {
			die("%v", err)
		}
		cur := map[string]interface{}{}
		if err := yaml.Unmarshal(data, &cur); err != nil {
			die("failed to parse %s: %v", f, err)
		}
		user = mergeMaps(user, cur)
	}
	vals := coalesce(user, ch.Values)
	if ch.Schema != nil {
		if err := validateValues(vals, ch.Schema); err != nil {
			die("values don't meet the specifications of the schema(s) in the following chart(s):\n%s:\n%s", ch.Meta.Name, err)
		}
	}
	if *valuesOut != "" {
		b, err := json.MarshalIndent(vals, "", "  ")
		if err != nil {
			die("%v", err)
		}
		if err := ioutil.WriteFile(*valuesOut, append(b, '\n'), 0o644); err != nil {
			die("%v", err)
		}
	}

	top := map[string]interface{}{
		"Chart":        chartMeta{ch.Meta, true},
		"Capabilities": caps,
		"Release": map[string]interface{}{
			"Name": *name, "Namespace": *namespace, "IsUpgrade": false, "IsInstall": true,
			"Revision": 1, "Service": "Helm",
		},
		"Values":    vals,
		"Files":     ch.Files,
		"Subcharts": map[string]interface{}{},
	}
	rendered, err := render(ch, top)
	if err != nil {
		die("%v", err)
	}

	// action.renderResources: NOTES.txt is not a manifest.
	notesName := path.Join(ch.Meta.Name, "templates", "NOTES.txt")
	notes := ""
	for k, v := range rendered {
		if strings.HasSuffix(k, "NOTES.txt") {
			if k == notesName {
				notes = v
			}
			delete(rendered, k)
		}
	}
	if *notesOut != "" {
		if err := ioutil.WriteFile(*notesOut, []byte(notes), 0o644); err != nil {
			die("%v", err)
		}
	}

	manifests, err := sortManifests(rendered)
	if err != nil {
		die("%v", err)
	}
	var out bytes.Buffer
	type jsonDoc struct {
		Source string          `json:"source"`
		Object json.RawMessage `json:"object"`
	}
	docs := []jsonDoc{}
	for _, m := range manifests {
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", m.name, m.content)
		j, err := yaml.YAMLToJSONStrict([]byte(m.content))
		if err != nil {
			die("YAML parse error on %s: %v", m.name, err)
		}
		docs = append(docs, jsonDoc{m.name, j})
	}
	if *jsonOut != "" {
		b, err := json.MarshalIndent(docs, "", "  ")
		if err != nil {
			die("%v", err)
		}
		if err := ioutil.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			die("%v", err)
		}
	}
	if !*quiet {
		os.Stdout.Write(out.Bytes())
	}
}

// capabilities builds .Capabilities for a Kubernetes version (chartutil.ParseKubeVersion)
// and the built-in API group versions of that version, plus --api-versions.
func capabilities(kv string, extra []string) (*Capabilities, error) {
	sv, err := semver.NewVersion(kv)
	if err != nil {
		return nil, fmt.Errorf("invalid --kube-version %q: %v", kv, err)
	}
	minor := sv.Minor()
	apis := VersionSet{"v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1",
		"networking.k8s.io/v1", "storage.k8s.io/v1", "autoscaling/v1", "coordination.k8s.io/v1",
		"scheduling.k8s.io/v1", "admissionregistration.k8s.io/v1", "apiextensions.k8s.io/v1",
		"apiregistration.k8s.io/v1", "authentication.k8s.io/v1", "authorization.k8s.io/v1",
		"certificates.k8s.io/v1", "events.k8s.io/v1", "node.k8s.io/v1", "discovery.k8s.io/v1"}
	if minor >= 21 {
		apis = append(apis, "policy/v1")
	}
	if minor < 25 {
		apis = append(apis, "policy/v1beta1")
	}
	if minor >= 23 {
		apis = append(apis, "autoscaling/v2")
	}
	apis = append(apis, extra...)
	return &Capabilities{
		KubeVersion: KubeVersion{
			Version: fmt.Sprintf("v%d.%d.%d", sv.Major(), sv.Minor(), sv.Patch()),
			Major:   fmt.Sprint(sv.Major()),
			Minor:   fmt.Sprint(sv.Minor()),
		},
		APIVersions: apis,
		HelmVersion: BuildInfo{Version: "v3-aurora-chart-render"},
	}, nil
}

// ---------------------------------------------------------------- chart loading

func loadChart(dir string) (*chart, error) {
	ignore := []string{}
	if b, err := ioutil.ReadFile(filepath.Join(dir, ".helmignore")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			l = strings.TrimSpace(l)
			if l != "" && !strings.HasPrefix(l, "#") {
				ignore = append(ignore, l)
			}
		}
	}
	ignored := func(rel string, isDir bool) bool {
		for _, p := range ignore {
			pat := strings.TrimSuffix(p, "/")
			if strings.HasSuffix(p, "/") && !isDir {
				continue
			}
			if m, _ := filepath.Match(pat, rel); m {
				return true
			}
			if m, _ := filepath.Match(pat, filepath.Base(rel)); m {
				return true
			}
		}
		return false
	}

	ch := &chart{Templates: map[string]string{}, Files: Files{}}
	raw, err := ioutil.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return nil, fmt.Errorf("Chart.yaml file is missing: %v", err)
	}
	if err := yaml.Unmarshal(raw, &ch.Meta); err != nil {
		return nil, fmt.Errorf("cannot load Chart.yaml: %v", err)
	}
	// chart.Metadata.Validate
	switch {
	case ch.Meta.APIVersion == "":
		return nil, errors.New("validation: chart.metadata.apiVersion is required")
	case ch.Meta.APIVersion != "v1" && ch.Meta.APIVersion != "v2":
		return nil, fmt.Errorf("validation: chart.metadata.apiVersion %q is not supported", ch.Meta.APIVersion)
	case ch.Meta.Name == "":
		return nil, errors.New("validation: chart.metadata.name is required")
	case ch.Meta.Version == "":
		return nil, errors.New("validation: chart.metadata.version is required")
	}
	if _, err := semver.StrictNewVersion(ch.Meta.Version); err != nil {
		return nil, fmt.Errorf("validation: chart.metadata.version %q is invalid", ch.Meta.Version)
	}
	if ch.Meta.Type != "" && ch.Meta.Type != "application" {
		return nil, fmt.Errorf("chart type %q is not supported by this stand-in", ch.Meta.Type)
	}
	if len(ch.Meta.Dependencies) > 0 {
		return nil, errors.New("chart dependencies are not supported by this stand-in")
	}

	ch.Values = map[string]interface{}{}
	if b, err := ioutil.ReadFile(filepath.Join(dir, "values.yaml")); err == nil {
		if err := yaml.Unmarshal(b, &ch.Values); err != nil {
			return nil, fmt.Errorf("cannot load values.yaml: %v", err)
		}
		if ch.Values == nil {
			ch.Values = map[string]interface{}{}
		}
	}
	if b, err := ioutil.ReadFile(filepath.Join(dir, "values.schema.json")); err == nil {
		var probe interface{}
		if err := json.Unmarshal(b, &probe); err != nil {
			return nil, fmt.Errorf("cannot load values.schema.json: %v", err)
		}
		ch.Schema = b
	}

	err = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if ignored(rel, info.IsDir()) {
			if info.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if info.IsDir() {
			if rel == "charts" {
				return errors.New("subcharts (charts/) are not supported by this stand-in")
			}
			return nil
		}
		b, err := ioutil.ReadFile(p)
		if err != nil {
			return err
		}
		switch {
		case strings.HasPrefix(rel, "templates/"):
			ch.Templates[rel] = string(b)
		case rel == "Chart.yaml" || rel == "values.yaml" || rel == "values.schema.json" ||
			rel == "Chart.lock" || rel == "requirements.yaml" || rel == "requirements.lock":
		default:
			ch.Files[rel] = b
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ch, nil
}

// ---------------------------------------------------------------- values

// mergeMaps is pkg/cli/values.mergeMaps: how several -f files combine.
func mergeMaps(a, b map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if v, ok := v.(map[string]interface{}); ok {
			if bv, ok := out[k]; ok {
				if bv, ok := bv.(map[string]interface{}); ok {
					out[k] = mergeMaps(bv, v)
					continue
				}
			}
		}
		out[k] = v
	}
	return out
}

func deepCopy(v interface{}) interface{} {
	switch t := v.(type) {
	case map[string]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, x := range t {
			m[k] = deepCopy(x)
		}
		return m
	case []interface{}:
		l := make([]interface{}, len(t))
		for i, x := range t {
			l[i] = deepCopy(x)
		}
		return l
	}
	return v
}

func istable(v interface{}) bool { _, ok := v.(map[string]interface{}); return ok }

func warn(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "coalesce.go: warning: "+format+"\n", a...)
}

// coalesce is chartutil.CoalesceValues for a chart without dependencies
// (coalesceValues + coalesceTablesFullKey, merge=false): the user's values win, tables
// merge, and a user null deletes the chart's default.
func coalesce(user, defaults map[string]interface{}) map[string]interface{} {
	v := deepCopy(user).(map[string]interface{})
	vc := deepCopy(defaults).(map[string]interface{})
	for key, val := range vc {
		if value, ok := v[key]; ok {
			if value == nil {
				delete(v, key)
			} else if dest, ok := value.(map[string]interface{}); ok {
				src, ok := val.(map[string]interface{})
				if !ok {
					if val != nil {
						warn("skipped value for %s: Not a table.", key)
					}
				} else {
					coalesceTables(dest, src, key)
				}
			}
		} else {
			v[key] = val
		}
	}
	return v
}

func coalesceTables(dst, src map[string]interface{}, prefix string) map[string]interface{} {
	if src == nil {
		return dst
	}
	if dst == nil {
		return src
	}
	for key, val := range dst {
		if val == nil {
			src[key] = nil
		}
	}
	for key, val := range src {
		fullkey := prefix + "." + key
		if dv, ok := dst[key]; ok && dv == nil {
			delete(dst, key)
		} else if !ok {
			dst[key] = val
		} else if istable(val) {
			if istable(dv) {
				coalesceTables(dv.(map[string]interface{}), val.(map[string]interface{}), fullkey)
			} else {
				warn("cannot overwrite table with non table for %s (%v)", fullkey, val)
			}
		} else if istable(dv) && val != nil {
			warn("destination for %s is a table. Ignoring non-table value (%v)", fullkey, val)
		}
	}
	return dst
}

// validateValues is chartutil.ValidateAgainstSingleSchema of Helm 3.0-3.17 (gojsonschema).
func validateValues(vals map[string]interface{}, schema []byte) error {
	data, err := yaml.Marshal(vals)
	if err != nil {
		return err
	}
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return err
	}
	if bytes.Equal(j, []byte("null")) {
		j = []byte("{}")
	}
	res, err := gojsonschema.Validate(gojsonschema.NewBytesLoader(schema), gojsonschema.NewBytesLoader(j))
	if err != nil {
		return err
	}
	if !res.Valid() {
		var sb strings.Builder
		for _, d := range res.Errors() {
			fmt.Fprintf(&sb, "- %s\n", d)
		}
		return errors.New(sb.String())
	}
	return nil
}

// ---------------------------------------------------------------- rendering

const (
	warnStartDelim = "HELM_ERR_START"
	warnEndDelim   = "HELM_ERR_END"
)

var warnRegex = regexp.MustCompile(warnStartDelim + `((?s).*)` + warnEndDelim)

func warnWrap(w string) string { return warnStartDelim + w + warnEndDelim }

func toYAML(v interface{}) string {
	data, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

func funcMap() template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	extra := template.FuncMap{
		"toYaml": toYAML,
		"mustToYaml": func(v interface{}) string {
			data, err := yaml.Marshal(v)
			if err != nil {
				panic(err)
			}
			return strings.TrimSuffix(string(data), "\n")
		},
		"fromYaml": func(s string) map[string]interface{} {
			m := map[string]interface{}{}
			if err := yaml.Unmarshal([]byte(s), &m); err != nil {
				m["Error"] = err.Error()
			}
			return m
		},
		"fromYamlArray": func(s string) []interface{} {
			a := []interface{}{}
			if err := yaml.Unmarshal([]byte(s), &a); err != nil {
				a = []interface{}{err.Error()}
			}
			return a
		},
		"toJson": func(v interface{}) string {
			b, err := json.Marshal(v)
			if err != nil {
				return ""
			}
			return string(b)
		},
		"mustToJson": func(v interface{}) string {
			b, err := json.Marshal(v)
			if err != nil {
				panic(err)
			}
			return string(b)
		},
		"fromJson": func(s string) map[string]interface{} {
			m := map[string]interface{}{}
			if err := json.Unmarshal([]byte(s), &m); err != nil {
				m["Error"] = err.Error()
			}
			return m
		},
		"fromJsonArray": func(s string) []interface{} {
			a := []interface{}{}
			if err := json.Unmarshal([]byte(s), &a); err != nil {
				a = []interface{}{err.Error()}
			}
			return a
		},
		"lookup": func(string, string, string, string) (map[string]interface{}, error) {
			return map[string]interface{}{}, nil
		},
		"getHostByName": func(string) string { return "" },
		"required": func(msg string, val interface{}) (interface{}, error) {
			if val == nil {
				return val, errors.New(warnWrap(msg))
			} else if s, ok := val.(string); ok && s == "" {
				return val, errors.New(warnWrap(msg))
			}
			return val, nil
		},
		"fail": func(msg string) (string, error) { return "", errors.New(warnWrap(msg)) },
		// late-bound below
		"include": func(string, interface{}) string { return "not implemented" },
		"tpl":     func(string, interface{}) interface{} { return "not implemented" },
	}
	for k, v := range extra {
		f[k] = v
	}
	return f
}

const recursionMaxNums = 1000

func includeFun(t *template.Template, included map[string]int) func(string, interface{}) (string, error) {
	return func(name string, data interface{}) (string, error) {
		var buf strings.Builder
		if v, ok := included[name]; ok {
			if v > recursionMaxNums {
				return "", fmt.Errorf("rendering template has a nested reference name: %s: unable to execute template", name)
			}
			included[name]++
		} else {
			included[name] = 1
		}
		err := t.ExecuteTemplate(&buf, name, data)
		included[name]--
		return buf.String(), err
	}
}

func tplFun(parent *template.Template, included map[string]int) func(string, interface{}) (string, error) {
	return func(tpl string, vals interface{}) (string, error) {
		t, err := parent.Clone()
		if err != nil {
			return "", fmt.Errorf("cannot clone template: %v", err)
		}
		t.Option("missingkey=zero")
		t.Funcs(template.FuncMap{"include": includeFun(t, included), "tpl": tplFun(t, included)})
		t, err = t.New(parent.Name()).Parse(tpl)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %v", tpl, err)
		}
		var buf strings.Builder
		if err := t.Execute(&buf, vals); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %v", tpl, err)
		}
		return strings.Replace(buf.String(), "<no value>", "", -1), nil
	}
}

// sortTemplates is engine.sortTemplates: deepest paths first, then reverse lexical.
func sortTemplates(names []string) []string {
	sort.Slice(names, func(i, j int) bool {
		a, b := names[i], names[j]
		ca, cb := strings.Count(a, "/"), strings.Count(b, "/")
		if ca == cb {
			return a > b
		}
		return ca > cb
	})
	return names
}

// cleanupExecError is engine.cleanupExecError: surfaces required/fail messages.
func cleanupExecError(filename string, err error) error {
	if _, ok := err.(template.ExecError); !ok {
		return err
	}
	tokens := strings.SplitN(err.Error(), ": ", 3)
	if len(tokens) != 3 {
		return fmt.Errorf("execution error in (%s): %s", filename, err)
	}
	if parts := warnRegex.FindStringSubmatch(tokens[2]); len(parts) >= 2 {
		return fmt.Errorf("execution error at (%s): %s", tokens[1], parts[1])
	}
	return err
}

func render(ch *chart, top map[string]interface{}) (rendered map[string]string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("rendering template failed: %v", r)
		}
	}()
	t := template.New("gotpl")
	t.Option("missingkey=zero")
	fm := funcMap()
	included := map[string]int{}
	fm["include"] = includeFun(t, included)
	fm["tpl"] = tplFun(t, included)
	t.Funcs(fm)

	names := []string{}
	full := map[string]string{}
	for rel, text := range ch.Templates {
		n := path.Join(ch.Meta.Name, rel)
		names = append(names, n)
		full[n] = text
	}
	names = sortTemplates(names)
	for _, n := range names {
		if _, err := t.New(n).Parse(full[n]); err != nil {
			return nil, fmt.Errorf("parse error in (%s): %v", n, err)
		}
	}
	rendered = map[string]string{}
	basePath := path.Join(ch.Meta.Name, "templates")
	for _, n := range names {
		if strings.HasPrefix(path.Base(n), "_") {
			continue
		}
		vals := make(map[string]interface{}, len(top)+1)
		for k, v := range top {
			vals[k] = v
		}
		vals["Template"] = map[string]interface{}{"Name": n, "BasePath": basePath}
		var buf strings.Builder
		if err := t.ExecuteTemplate(&buf, n, vals); err != nil {
			return nil, cleanupExecError(n, err)
		}
		rendered[n] = strings.Replace(buf.String(), "<no value>", "", -1)
	}
	return rendered, nil
}

// ---------------------------------------------------------------- manifests

var sepRe = regexp.MustCompile("(?:^|\\s*\n)---\\s*")

// installOrder is releaseutil.InstallOrder.
var installOrder = []string{"PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota",
	"LimitRange", "PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret",
	"SecretList", "ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
	"CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
	"ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
	"DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
	"HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
	"APIService"}

type manifest struct {
	name, content, kind string
}

// sortManifests is releaseutil.SortManifests + SplitManifests + sortManifestsByKind.
// Deviation, stated: documents that hold only comments are dropped here (Helm prints
// them; the Kubernetes client skips them on install).
func sortManifests(files map[string]string) ([]manifest, error) {
	paths := []string{}
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	out := []manifest{}
	for _, p := range paths {
		c := files[p]
		if strings.HasPrefix(path.Base(p), "_") || strings.TrimSpace(c) == "" {
			continue
		}
		for _, d := range sepRe.Split(strings.TrimSpace(c), -1) {
			d = strings.TrimSpace(d)
			if d == "" {
				continue
			}
			var any interface{}
			if err := yaml.Unmarshal([]byte(d), &any); err != nil {
				return nil, fmt.Errorf("YAML parse error on %s: %v", p, err)
			}
			if any == nil {
				continue // comments only
			}
			var head struct {
				Version string `json:"apiVersion"`
				Kind    string `json:"kind,omitempty"`
			}
			if err := yaml.Unmarshal([]byte(d), &head); err != nil {
				return nil, fmt.Errorf("YAML parse error on %s: %v", p, err)
			}
			if head.Version == "" || head.Kind == "" {
				return nil, fmt.Errorf("%s: a document without apiVersion/kind", p)
			}
			out = append(out, manifest{p, d, head.Kind})
		}
	}
	order := map[string]int{}
	for i, k := range installOrder {
		order[k] = i
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, aok := order[out[i].kind]
		b, bok := order[out[j].kind]
		if !aok && !bok {
			return out[i].kind < out[j].kind
		}
		if !aok {
			return false
		}
		if !bok {
			return true
		}
		return a < b
	})
	return out, nil
}
