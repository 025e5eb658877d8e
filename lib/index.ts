export { ResilientStore } from './store.js';
export type { StoreStats, WriteBackResult } from './store.js';
export type { Backend } from './failover.js';
export { storeDefaults } from './options.js';
export type { MemoryOptions, ResilientStoreOptions, Serializer } from './options.js';
export type { RedisClient } from './redis-client.js';
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
