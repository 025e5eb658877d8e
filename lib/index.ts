export { ResilientStore } from './session/store.js';
export type { SessionWithId, StoreStats } from './session/store-types.js';
export type { WriteBackResult } from './session/write-back.js';
export type { Backend } from './redis/failover.js';
export { storeDefaults } from './session/options.js';
export type { MemoryOptions, ResilientStoreOptions, Serializer } from './session/options.js';
export type { DestroySessionsOfOptions, UserSession } from './session/user-index.js';
export type { RedisClient } from './redis/client.js';
export { rateLimit, rateLimitDefaults } from './rate-limit/rate-limit.js';
export type {
	BudgetInfo,
	ChargeResult,
	RateLimitConfig,
	RateLimitCost,
	RateLimitHandler,
	RateLimitMessage,
	RateLimitOptions,
	RateLimitWindow,
} from './rate-limit/rate-limit.js';
export { ipKeyGenerator } from 'express-rate-limit';
export { loginGuard, loginGuardDefaults, normalizeUsername } from './login-guard/login-guard.js';
export type {
	LockoutInfo,
	LockoutScope,
	LoginAttempt,
	LoginGuard,
	LoginGuardMemoryOptions,
	LoginGuardOptions,
	LoginOutcome,
} from './login-guard/login-guard.js';
export { healthHandler, healthHandlerDefaults } from './operations/health-handler.js';
export type { HealthAnswer, HealthHandlerOptions } from './operations/health-handler.js';
export { collectMetrics, collectMetricsDefaults } from './operations/collect-metrics.js';
export type { CollectMetricsOptions, MetricsRegistry, StoreMetrics } from './operations/collect-metrics.js';
export { silentLogger } from './logger.js';
export type { Logger } from './logger.js';
export {
	isRedisTimeoutError,
	isRedisUnavailableError,
	isResilientSessionError,
	isStoreClosedError,
	RedisTimeoutError,
	RedisUnavailableError,
	ResilientSessionError,
	StoreClosedError,
} from './errors.js';
export type { ResilientErrorCode } from './errors.js';
export type { Callback } from './callback.js';
