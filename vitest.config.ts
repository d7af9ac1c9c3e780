import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The real-Kubernetes tier has its own config and command: npm run test:k8s (vitest.k8s.config.ts).
    exclude: [...configDefaults.exclude, 'test/k8s/**'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
