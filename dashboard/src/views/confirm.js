// A button whose action needs a second, explicit yes (a modal dialog).
import { useRef } from 'preact/hooks';
import { html } from '../html.js';

export function ConfirmButton({ label, confirmText, onConfirm, cls = '' }) {
	const dlg = useRef(null);
	return html`
		<button type="button" class=${cls} onClick=${() => dlg.current.showModal()}>${label}</button>
		<dialog ref=${dlg} aria-label=${label}>
			<form method="dialog">
				<p>${confirmText}</p>
				<div class="actions">
					<button value="cancel" type="submit">Cancel</button>
					<button value="ok" type="submit" class=${cls || 'primary'} onClick=${() => onConfirm()}>${label}</button>
				</div>
			</form>
		</dialog>`;
}
