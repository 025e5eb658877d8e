/**
 * A working copy of express-session to run its test suite from: the library and its tests,
 * copied from a checkout or extracted from a git directory into a temporary directory,
 * with its runtime dependencies and the few development dependencies the tests need
 * installed there. The checkout given is never modified, and nothing of it lands in the
 * project.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Development dependencies `test/session.js` and `test/cookie.js` load; the rest (eslint, nyc) are not needed. */
const TEST_DEPENDENCIES = ['after', 'cookie-parser', 'express', 'mocha', 'supertest'];

/** What the working copy needs of the checkout. */
const COPIED = ['package.json', 'index.js', 'session', 'test'];

export interface Checkout {
	/** The working copy: `index.js`, `session/`, `test/`, and `node_modules/`. */
	readonly dir: string;
	/** express-session's version, from its package.json. */
	readonly version: string;
	/** Where it came from, for the report. */
	readonly source: string;
}

const isGitDir = (dir: string): boolean =>
	fs.existsSync(path.join(dir, 'HEAD')) && fs.existsSync(path.join(dir, 'objects'));

const git = (gitDir: string, args: string[]): string =>
	execFileSync('git', ['--git-dir', gitDir, ...args], { encoding: 'utf8' }).trim();

/** The newest `v1.19.x` tag of a git directory of express-session. */
const newestTag = (gitDir: string): string => {
	const tags = git(gitDir, ['tag', '--list', 'v1.19.*', '--sort=-v:refname']).split('\n').filter(Boolean);
	if (tags.length === 0) throw new Error(`${gitDir} has no v1.19.x tag; pass one with --ref`);
	return tags[0]!;
};

/**
 * Prepares a working copy of the express-session at `source`: a checkout (a directory
 * with `index.js` and `test/`), or a git directory (bare or `.git`), read at `ref`
 * (default: its newest v1.19.x tag). Reuses a copy prepared before from the same files.
 */
export const prepareCheckout = (source: string, ref?: string): Checkout => {
	const from = path.resolve(source);
	const gitDir = isGitDir(from) ? from : isGitDir(path.join(from, '.git')) && ref ? path.join(from, '.git') : undefined;
	let label: string;
	let key: string;
	let extract: (into: string) => void;

	if (gitDir) {
		const revision = ref ?? newestTag(gitDir);
		const commit = git(gitDir, ['rev-parse', `${revision}^{commit}`]);
		label = `${gitDir} at ${revision} (${commit.slice(0, 12)})`;
		key = commit;
		extract = (into) => {
			const archive = execFileSync('git', ['--git-dir', gitDir, 'archive', '--format=tar', commit, ...COPIED]);
			execFileSync('tar', ['-x', '-C', into], { input: archive });
		};
	} else {
		if (!fs.existsSync(path.join(from, 'index.js')) || !fs.existsSync(path.join(from, 'test', 'session.js'))) {
			throw new Error(`${from} is neither an express-session checkout (index.js, test/session.js) nor a git directory`);
		}

		label = from;
		const hash = createHash('sha256');
		const walk = (file: string): void => {
			if (fs.statSync(file).isDirectory()) {
				for (const entry of fs.readdirSync(file).sort()) walk(path.join(file, entry));
			} else {
				hash.update(path.relative(from, file)).update(fs.readFileSync(file));
			}
		};

		for (const entry of COPIED) walk(path.join(from, entry));
		key = hash.digest('hex');
		extract = (into) => {
			for (const entry of COPIED) fs.cpSync(path.join(from, entry), path.join(into, entry), { recursive: true });
		};
	}

	const dir = path.join(os.tmpdir(), `resilient-session-express-session-${key.slice(0, 16)}`);
	const ready = path.join(dir, '.prepared');
	if (!fs.existsSync(ready)) {
		fs.rmSync(dir, { recursive: true, force: true });
		fs.mkdirSync(dir, { recursive: true });
		extract(dir);
		install(dir);
		// The HTTPS tests read a certificate the suite makes with its own script.
		fs.mkdirSync(path.join(dir, 'test', 'fixtures'), { recursive: true });
		execFileSync('sh', ['test/support/gencert.sh'], { cwd: dir, stdio: 'ignore' });
		fs.writeFileSync(ready, `${label}\n`);
	}

	const { version } = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version: string };
	return { dir, version, source: label };
};

/**
 * Installs express-session's runtime dependencies and, at the versions its package.json
 * pins, the development dependencies its tests load.
 */
const install = (dir: string): void => {
	const file = path.join(dir, 'package.json');
	const manifest = JSON.parse(fs.readFileSync(file, 'utf8')) as {
		devDependencies?: Record<string, string>;
		scripts?: Record<string, string>;
	};
	const dev = manifest.devDependencies ?? {};
	manifest.devDependencies = Object.fromEntries(
		TEST_DEPENDENCIES.map((name) => {
			if (!dev[name]) throw new Error(`express-session's package.json does not list ${name}`);
			return [name, dev[name]];
		}),
	);
	delete manifest.scripts;
	fs.writeFileSync(file, `${JSON.stringify(manifest, null, 2)}\n`);
	console.log(`installing express-session's test dependencies in ${dir}`);
	execFileSync('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error'], {
		cwd: dir,
		stdio: 'inherit',
	});
};
