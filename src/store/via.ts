/** The two ways a session is written (see sql.ts); no imports, so option tables can use it cheaply. */
export type Via = 'function' | 'statement';
export const VIAS: readonly Via[] = ['function', 'statement'];
