// htm bound to Preact: the views' JSX-free templates.
import { h } from 'preact';
import htm from 'htm';

export const html = htm.bind(h);
