// Package deploy holds acmeq's deployment files (Dockerfile, compose.yaml,
// kubernetes/, systemd/, nats/) and no code: its tests parse every file and
// check it against the code and the README, and run every role of
// nats/permissions.conf against a real nats-server.
package deploy
