// Package config loads a campaign configuration from TOML: it rejects
// unknown keys, fills in a provider's preset (presets.go), applies defaults
// in one place (Config.applyDefaults), resolves relative paths against the
// config file's folder, reads secrets from the environment only, and reports
// every problem at once, each naming its key.
package config
