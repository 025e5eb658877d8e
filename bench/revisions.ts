/**
 * ResilientStore as it was at another git revision, for a same-run comparison with the
 * working tree (`npm run bench:cpu -- --kinds resilient@HEAD~1,resilient`): the
 * revision's `lib/` is exported once into `.bench-revisions/<commit>/lib` (ignored by
 * git, the linter and the type check), where it resolves its dependencies from the
 * project's own node_modules. The server under test then loads the package from there
 * (`BENCH_LIB_ROOT`, read by `library()`), and everything else (the bench's server, the
 * stores it compares with, the scenarios) stays the working tree's.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT } from './processes.js';

/** The folder that holds the `lib/` the server under test loads: the working tree's, or a revision's. */
export const libraryRoot = (): string => process.env.BENCH_LIB_ROOT ?? ROOT;

/** The package as the server under test loads it (see the module's comment). */
export const library = async (): Promise<typeof import('../lib/index.js')> =>
	(await import(pathToFileURL(path.join(libraryRoot(), 'lib', 'index.ts')).href)) as typeof import('../lib/index.js');

/** Splits `kind@revision` (the revision is checked by {@link commitOf}). */
export const parseKindAtRevision = (spec: string): { kind: string; revision?: string } => {
	const at = spec.indexOf('@');
	return at === -1 ? { kind: spec } : { kind: spec.slice(0, at), revision: spec.slice(at + 1) };
};

/** The full commit id `revision` names in the project's repository. */
export const commitOf = (revision: string): string => {
	try {
		return execFileSync('git', ['rev-parse', '--verify', '--quiet', `${revision}^{commit}`], {
			cwd: ROOT,
			encoding: 'utf8',
		}).trim();
	} catch {
		throw new Error(`${JSON.stringify(revision)} names no commit of this repository`);
	}
};

/**
 * The folder holding `lib/` as it was at `commit` (exported on first use), to pass as
 * `BENCH_LIB_ROOT` to the server under test.
 */
export const exportRevision = (commit: string): string => {
	const root = path.join(ROOT, '.bench-revisions', commit);
	if (existsSync(path.join(root, 'lib', 'index.ts'))) return root;
	const partial = `${root}.partial`;
	rmSync(partial, { recursive: true, force: true });
	mkdirSync(partial, { recursive: true });
	const archive = execFileSync('git', ['archive', '--format=tar', commit, 'lib'], { cwd: ROOT, maxBuffer: 1 << 28 });
	execFileSync('tar', ['-x', '-C', partial], { input: archive });
	if (!existsSync(path.join(partial, 'lib', 'index.ts'))) {
		rmSync(partial, { recursive: true, force: true });
		throw new Error(`commit ${commit} has no lib/index.ts`);
	}

	renameSync(partial, root);
	return root;
};
