/** The library: what applications call instead of hand-written SQL. */
export { classifyError, type Classified, type ErrorCode } from './db/classify.js';
export { maskUrl } from './config.js';
