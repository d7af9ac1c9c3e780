// Hinted handoff: writes accepted for a replica that was down, kept durably as hints per intended owner
// and delivered to it once it is back (oldest first, rate-limited), or to the key's replicas once it has
// left; a hint past the window is dropped only when a true replica already holds what it carries.

export * from './delivery.js';
export * from './hint-queue.js';
export * from './routing.js';
