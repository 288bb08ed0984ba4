// Apart from swarm.ts so that the option table (read by every CLI command) can name it without
// loading the swarm's protocols.

/** Default period of the replica repair rounds and of the policy anti-entropy. */
export const DEFAULT_REPLICA_INTERVAL_MS = 30_000
