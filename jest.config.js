/** @type {import('jest').Config} */
module.exports = {
	preset: 'ts-jest',
	testEnvironment: 'node',
	roots: ['<rootDir>/__tests__'],
	// Helpers live in __tests__/helpers and are not test files.
	testMatch: ['<rootDir>/__tests__/*.test.ts'],
	moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
	transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json', diagnostics: { warnOnly: false } }] },
	testTimeout: 30_000,
	// Every test file starts its own redis-server; two at a time fits two cores.
	maxWorkers: 2,
};
