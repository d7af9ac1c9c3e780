// The real-Kubernetes tier (npm run test:k8s): test/k8s/ against hack/local-k8s.sh's cluster, which the
// global setup brings up (or reuses) and takes down again if it brought it up. One file, one cluster: no
// parallelism.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/k8s/**/*.test.ts'],
    globalSetup: ['test/k8s/global-setup.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 15 * 60_000,
    hookTimeout: 15 * 60_000,
    // A scenario that fails leaves the cluster as it was, for the next one to wait on; never retried.
    retry: 0,
  },
});
