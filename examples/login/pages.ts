/**
 * The HTML of the login example: plain server-rendered pages, no framework. Every value
 * that comes from a user or a session is escaped.
 */
import type { Backend } from '../../lib/index.js';

const escapeHtml = (text: string): string =>
	text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);

const style = `
body { font: 16px/1.5 system-ui, sans-serif; background: #f3f4f6; color: #111827; margin: 0; }
main { max-width: 26rem; margin: 4rem auto; background: #fff; padding: 2rem 2.25rem; border-radius: 12px;
       box-shadow: 0 1px 3px rgb(0 0 0 / 0.12); }
h1 { font-size: 1.5rem; margin: 0 0 1.25rem; }
label { display: block; font-weight: 600; margin-top: 1rem; }
input { box-sizing: border-box; width: 100%; padding: 0.55rem 0.7rem; margin-top: 0.25rem; font: inherit;
        border: 1px solid #d1d5db; border-radius: 6px; }
button { margin-top: 1.5rem; padding: 0.6rem 1.2rem; font: inherit; font-weight: 600; color: #fff;
         background: #2563eb; border: 0; border-radius: 6px; cursor: pointer; }
button:disabled { background: #9ca3af; cursor: not-allowed; }
.message { padding: 0.7rem 0.9rem; border-radius: 6px; margin: 0 0 1rem; }
.error { background: #fef2f2; color: #991b1b; border: 1px solid #fecaca; }
.info { background: #eff6ff; color: #1e40af; border: 1px solid #bfdbfe; }
.status { max-width: 26rem; margin: -3rem auto 0; color: #4b5563; font-size: 0.9rem; text-align: center; }
.status strong { font-family: ui-monospace, monospace; }
a { color: #2563eb; }
.devices { list-style: none; padding: 0; margin: 0; }
.devices li { padding: 0.6rem 0; border-bottom: 1px solid #e5e7eb; }
.devices code { font-family: ui-monospace, monospace; font-weight: 600; }
.devices small { display: block; color: #4b5563; }
.current { margin-left: 0.4rem; padding: 0.1rem 0.45rem; border-radius: 999px; font-size: 0.8rem;
           background: #dcfce7; color: #166534; }
`;

/** A whole page, with the status line that says where sessions are kept right now. */
const layout = (title: string, body: string, backend: Backend): string => `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${style}</style>
<main>
${body}
</main>
<p class="status">Sessions are served from <strong id="backend">${backend}</strong></p>
</html>
`;

export interface LoginPageOptions {
	/** Where sessions are kept right now: `store.backend`. */
	readonly backend: Backend;
	/** The username to fill in again after a failed attempt. */
	readonly username?: string;
	/** An error to show above the form. */
	readonly error?: string;
	/** A notice to show above the form (after logout). */
	readonly notice?: string;
	/** Seconds before the form may be sent again: the button stays disabled until then. */
	readonly retryAfterSeconds?: number;
}

/** The login form. It posts `username` and `password` as a form (`express.urlencoded()`). */
export const loginPage = (options: LoginPageOptions): string => {
	const { backend, username = '', error, notice, retryAfterSeconds } = options;
	const locked = retryAfterSeconds !== undefined && retryAfterSeconds > 0;
	const messages = [
		error ? `<p class="message error" id="error" role="alert">${escapeHtml(error)}</p>` : '',
		notice ? `<p class="message info" id="notice">${escapeHtml(notice)}</p>` : '',
	].join('');
	// While locked, the button counts down and comes back when the wait is over.
	const countdown = locked
		? `<script>
{
	const button = document.getElementById('sign-in');
	let seconds = ${retryAfterSeconds};
	const tick = () => {
		if (seconds <= 0) {
			button.disabled = false;
			button.textContent = 'Sign in';
			return;
		}
		button.textContent = 'Try again in ' + seconds + ' s';
		seconds -= 1;
		setTimeout(tick, 1000);
	};
	tick();
}
</script>`
		: '';
	return layout(
		'Sign in',
		`<h1>Sign in</h1>
${messages}
<form method="post" action="/login">
	<label for="username">Username</label>
	<input id="username" name="username" autocomplete="username" required value="${escapeHtml(username)}">
	<label for="password">Password</label>
	<input id="password" name="password" type="password" autocomplete="current-password" required>
	<button id="sign-in"${locked ? ' disabled' : ''}>Sign in</button>
</form>
${countdown}`,
		backend,
	);
};

export interface MembersPageOptions {
	readonly backend: Backend;
	readonly user: string;
	/** When this session signed in, in ms since the epoch. */
	readonly signedInAt: number;
	/** Members pages seen in this session, this one included. */
	readonly visits: number;
}

/** The page only signed-in users see, with the logout button. */
export const membersPage = ({ backend, user, signedInAt, visits }: MembersPageOptions): string =>
	layout(
		'Members',
		`<h1>Welcome, <span id="user">${escapeHtml(user)}</span></h1>
<p>You signed in at ${new Date(signedInAt).toISOString().slice(11, 19)} UTC.
This is your visit number <strong id="visits">${visits}</strong> to this page.</p>
<p><a href="/devices" id="devices-link">Your devices</a></p>
<form method="post" action="/logout">
	<button id="log-out">Log out</button>
</form>`,
		backend,
	);

/** A session of the user, as the devices page shows it. */
export interface Device {
	/** The first characters of the session id: enough to tell devices apart, too few to use. */
	readonly shortId: string;
	/** When that session signed in, in ms since the epoch. */
	readonly signedInAt?: number;
	/** When it expires unless used again; `null` when sessions do not expire. */
	readonly expiresAt: Date | null;
	/** Whether it is the session of the request. */
	readonly current: boolean;
}

export interface DevicesPageOptions {
	readonly backend: Backend;
	/** The user's sessions, the latest to expire first. */
	readonly devices: readonly Device[];
	/** How many other sessions were just logged out, after the form was sent. */
	readonly loggedOut?: number;
}

const utc = (date: Date): string => `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;

/** The user's devices (sessions), and a button that logs out every one but this. */
export const devicesPage = ({ backend, devices, loggedOut }: DevicesPageOptions): string => {
	const notice =
		loggedOut === undefined
			? ''
			: `<p class="message info" id="notice">Logged out ${loggedOut} other device${loggedOut === 1 ? '' : 's'}.</p>`;
	const items = devices
		.map(({ shortId, signedInAt, expiresAt, current }) => {
			const signedIn = signedInAt === undefined ? '' : `signed in ${utc(new Date(signedInAt))}, `;
			const expires = expiresAt ? `expires ${utc(expiresAt)}` : 'does not expire';
			return `<li${current ? ' id="this-device"' : ''}><code>${escapeHtml(shortId)}</code>${
				current ? '<span class="current">this device</span>' : ''
			}<small>${signedIn}${expires}</small></li>`;
		})
		.join('\n');
	const others = devices.some((device) => !device.current);
	return layout(
		'Your devices',
		`<h1>Your devices</h1>
${notice}
<ul class="devices" id="devices">
${items}
</ul>
<form method="post" action="/devices/logout-others">
	<button id="log-out-others"${others ? '' : ' disabled'}>Log out other devices</button>
</form>
<p><a href="/members">Back to the members page</a></p>`,
		backend,
	);
};
