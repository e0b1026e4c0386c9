// Azurite's blob, queue and table services in one process, each on its own thread.
//
//   node azurite_services.js <azurite package dir> <host> <blob port> <queue port> <table port>
//
// Each service runs its own entry point (dist/src/<service>/main.js) in a worker thread,
// so each has its own event loop, as on Azure where they are separate services: a queue
// request does not wait behind blob uploads. One process, one PID to stop. If any service
// ends, the process ends.
"use strict";
const path = require("node:path");
const { Worker } = require("node:worker_threads");

const [root, host, ...ports] = process.argv.slice(2);
const services = ["blob", "queue", "table"];
if (!root || !host || ports.length !== services.length) {
  console.error("usage: node azurite_services.js <azurite dir> <host> <blob> <queue> <table>");
  process.exit(2);
}
const options = ["--silent", "--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck"];
services.forEach((service, i) => {
  const argv = [...options, `--${service}Host`, host, `--${service}Port`, ports[i]];
  const worker = new Worker(path.join(root, "dist", "src", service, "main.js"), { argv });
  worker.on("error", (error) => {
    console.error(`azurite ${service}: ${(error && error.stack) || error}`);
    process.exit(1);
  });
  worker.on("exit", (code) => {
    console.error(`azurite ${service} ended (${code})`);
    process.exit(code || 1);
  });
});
