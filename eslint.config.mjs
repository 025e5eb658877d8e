import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
	{ ignores: ['dist/', 'coverage/', 'bench/results/', '.bench-revisions/'] },
	js.configs.recommended,
	...tseslint.configs.recommended,
	{
		rules: {
			// Redis clients of two major versions are typed structurally; `any` is deliberate there.
			'@typescript-eslint/no-explicit-any': 'off',
			'@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
			'no-empty': ['error', { allowEmptyCatch: true }],
			eqeqeq: ['error', 'always'],
		},
	},
	{
		files: ['jest.config.js'],
		languageOptions: { globals: { module: 'writable' } },
		rules: { '@typescript-eslint/no-require-imports': 'off' },
	},
);
