// Hinted handoff: writes accepted for a replica that was down, kept durably as hints per intended owner
// and delivered to it once it is back (oldest first, rate-limited), or dropped after the handoff window.

export * from './delivery.js';
export * from './hint-queue.js';
