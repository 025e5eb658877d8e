/**
 * How much of the machine's CPU other processes took while the benchmark measured, read
 * from /proc (Linux; elsewhere it is simply not reported). The load generator, the server
 * under test and Redis share the CPU: a build or a test suite running meanwhile skews a
 * round, and the reports say so.
 *
 * "Ours" is this process, its ancestors (npm, tsx) and all its descendants.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { median } from './stats.js';

export interface CpuSample {
	/** All CPU time of the machine so far, idle included, in clock ticks over every core. */
	readonly machine: number;
	/** CPU time per process that is not ours, in clock ticks. */
	readonly others: ReadonlyMap<number, number>;
}

interface ProcessStat {
	readonly ppid: number;
	readonly ticks: number;
	/** Minor page faults: pages the kernel had to map in on first touch. */
	readonly minorFaults: number;
}

/** A clock tick of /proc's CPU times (USER_HZ, 100 on Linux), in microseconds. */
const TICK_MICROS = 10_000;

/** A `stat` file of /proc (a process's, or one of its threads'), read. */
const readStat = (path: string): ProcessStat => {
	const stat = readFileSync(path, 'utf8');
	// The command name may hold spaces and parentheses: fields start after the last ')'.
	const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
	// Fields 4 (ppid), 10 (minflt), 14 (utime) and 15 (stime) of proc(5), counted from field 3.
	return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]), minorFaults: Number(fields[7]) };
};

const readProcessStat = (pid: number): ProcessStat | undefined => {
	try {
		return readStat(`/proc/${pid}/stat`);
	} catch {
		// The process ended meanwhile.
		return undefined;
	}
};

/** CPU time (user + system) of the main thread of process `pid` so far, in microseconds (Linux). */
export const mainThreadMicros = (pid: number): number => readStat(`/proc/${pid}/task/${pid}/stat`).ticks * TICK_MICROS;

/**
 * CPU time (user + system) of process `pid` so far, all its threads, in microseconds, and
 * its minor page faults so far, from one read of its `stat` (Linux).
 */
export const processUsage = (pid: number): { readonly micros: number; readonly minorFaults: number } => {
	const { ticks, minorFaults } = readStat(`/proc/${pid}/stat`);
	return { micros: ticks * TICK_MICROS, minorFaults };
};

/**
 * What a minor page fault costs this machine, in microseconds: the time to touch each
 * 4 KiB page of fresh memory once (the median of five 64 MiB buffers), its writes
 * included, which cost next to nothing once the page is mapped (0.05 µs a page on the
 * 2-vCPU VM of the published figures, where a fault took about 10 µs).
 */
export const pageFaultMicros = (): number => {
	const size = 64 * 1024 * 1024;
	const page = 4096;
	const timings: number[] = [];
	for (let i = 0; i < 5; i++) {
		// Not zero-filled: its pages are untouched until the loop writes them.
		const buffer = Buffer.allocUnsafeSlow(size);
		const started = process.hrtime.bigint();
		for (let offset = 0; offset < size; offset += page) buffer[offset] = 1;
		timings.push(Number(process.hrtime.bigint() - started) / 1000 / (size / page));
	}

	return median(timings);
};

/** A snapshot of the machine's CPU time, or `undefined` where /proc cannot tell. */
export const sampleCpu = (): CpuSample | undefined => {
	let machine: number;
	let pids: number[];
	try {
		const total = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
		machine = total
			.split(/\s+/)
			.slice(1)
			.reduce((sum, value) => sum + (Number(value) || 0), 0);
		pids = readdirSync('/proc')
			.filter((name) => /^\d+$/.test(name))
			.map(Number);
	} catch {
		return undefined;
	}

	const stats = new Map<number, ProcessStat>();
	for (const pid of pids) {
		const stat = readProcessStat(pid);
		if (stat) stats.set(pid, stat);
	}

	// Descendants first (a process whose parent is ours is ours, until nothing changes),
	// then ancestors, whose other children are not ours.
	const ours = new Set<number>([process.pid]);
	for (let grew = true; grew;) {
		grew = false;
		for (const [pid, stat] of stats) {
			if (!ours.has(pid) && ours.has(stat.ppid)) {
				ours.add(pid);
				grew = true;
			}
		}
	}

	for (let pid = stats.get(process.pid)?.ppid ?? 0; pid > 1; pid = stats.get(pid)?.ppid ?? 0) ours.add(pid);

	const others = new Map<number, number>();
	for (const [pid, stat] of stats) if (!ours.has(pid)) others.set(pid, stat.ticks);
	return { machine, others };
};

/**
 * The share (0 to 1) of the machine's CPU that other processes used between two
 * samples, or `undefined` if either is missing.
 */
export const othersShare = (before: CpuSample | undefined, after: CpuSample | undefined): number | undefined => {
	if (!before || !after || after.machine <= before.machine) return undefined;
	let used = 0;
	for (const [pid, ticks] of after.others) used += Math.max(0, ticks - (before.others.get(pid) ?? 0));
	return used / (after.machine - before.machine);
};
