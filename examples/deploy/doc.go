// Package deploy holds no code: its folder has the monitoring files of an
// rthub deployment (Grafana dashboard, Prometheus alert rules and their
// unit tests, a Prometheus configuration; README.md), and its tests check
// them: promtool check and test the rules, the dashboard parses, and every
// metric they name is one the promrthub collector (or client_golang's Go and
// process collectors) exports.
package deploy
