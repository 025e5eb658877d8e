/**
 * The package the server under test loads, compiled as it is published, and ResilientStore
 * as it was at another git revision, for a same-run comparison with the working tree
 * (`npm run bench:cpu -- --kinds resilient@HEAD~1,resilient`).
 *
 * The servers load the package compiled by `tsc` (as `npm run build` compiles it), not
 * the TypeScript source through tsx: tsx compiles with esbuild's `keepNames`, which wraps
 * every function the package creates, closures on each request too, in a call that
 * renames it, a cost the published package does not have and the JavaScript stores it is
 * compared with never pay. The working tree's `lib/` is compiled once per run into
 * `.bench-revisions/working-tree/`; a revision's `lib/` is exported once into
 * `.bench-revisions/<commit>/lib` and compiled beside it into `dist/` (both ignored by
 * git, the linter and the type check), where it resolves its dependencies from the
 * project's own node_modules. `BENCH_LIB_DIST` tells the server processes where the
 * compiled package is; everything else (the bench's server, the stores it compares with,
 * the scenarios) stays the working tree's.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT } from './processes.js';

/**
 * Compiles `<sourceRoot>/lib` into `outDir` as an ES module package, with the target and
 * module settings of tsconfig.build.json; types are not checked here (the project's own
 * `npm run typecheck` and build do that). Returns `outDir`.
 */
const compile = (sourceRoot: string, outDir: string): string => {
	const partial = `${outDir}.partial`;
	rmSync(partial, { recursive: true, force: true });
	const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
	// Given files on its command line, tsc reads no tsconfig: every setting is given here.
	execFileSync(process.execPath, [
		tsc,
		path.join(sourceRoot, 'lib', 'index.ts'),
		...['--outDir', partial, '--rootDir', path.join(sourceRoot, 'lib')],
		...['--target', 'ES2022', '--module', 'ESNext', '--moduleResolution', 'Bundler'],
		...['--esModuleInterop', '--skipLibCheck', '--resolveJsonModule', '--isolatedModules', '--noCheck'],
		...['--types', 'node'],
	], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
	writeFileSync(path.join(partial, 'package.json'), '{"type":"module"}\n');
	rmSync(outDir, { recursive: true, force: true });
	renameSync(partial, outDir);
	return outDir;
};

/**
 * The folder of the compiled package the servers load: `BENCH_LIB_DIST` when set (a
 * revision's, or the working tree's compiled by the process that started this one), else
 * the working tree's `lib/`, compiled now and named in `BENCH_LIB_DIST` for the processes
 * this one starts.
 */
export const compiledLibrary = (): string =>
	(process.env.BENCH_LIB_DIST ??= compile(ROOT, path.join(ROOT, '.bench-revisions', 'working-tree')));

/** The package as the server under test loads it (see the module's comment). */
export const library = async (): Promise<typeof import('../lib/index.js')> =>
	(await import(pathToFileURL(path.join(compiledLibrary(), 'index.js')).href)) as typeof import('../lib/index.js');

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
 * The compiled package as it was at `commit` (exported and compiled on first use), to pass
 * as `BENCH_LIB_DIST` to the server under test.
 */
export const compiledRevision = (commit: string): string => {
	const root = path.join(ROOT, '.bench-revisions', commit);
	const dist = path.join(root, 'dist');
	if (existsSync(path.join(dist, 'index.js'))) return dist;
	if (!existsSync(path.join(root, 'lib', 'index.ts'))) {
		const partial = `${root}.partial`;
		rmSync(partial, { recursive: true, force: true });
		mkdirSync(partial, { recursive: true });
		const archive = execFileSync('git', ['archive', '--format=tar', commit, 'lib'], { cwd: ROOT, maxBuffer: 1 << 28 });
		execFileSync('tar', ['-x', '-C', partial], { input: archive });
		if (!existsSync(path.join(partial, 'lib', 'index.ts'))) {
			rmSync(partial, { recursive: true, force: true });
			throw new Error(`commit ${commit} has no lib/index.ts`);
		}

		rmSync(root, { recursive: true, force: true });
		renameSync(partial, root);
	}

	return compile(root, dist);
};
