// The types of rthub-client.js, for tsc only (the dashboard's type check,
// tsconfig.json in examples/iotserver): the package's own, from its source.
export * from "../../../../clients/js/src/index.js";
