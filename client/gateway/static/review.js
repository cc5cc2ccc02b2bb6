// The review view of the narrator web page: a run's images as a gallery
// (GET /v1/runs/{run}, page by page), each with its thumbnail (the original
// one click away), state, caption
// and audio; a caption can be corrected (POST /v1/jobs/{id}/review speaks
// it again and keeps both) and approved, failed images filtered, and the
// approved alt text exported as JSON Lines. Plain JavaScript, no build step.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const form = $('run-form');
  const runInput = $('run-id');
  const tools = $('review-tools');
  const summary = $('run-summary');
  const onlyFailed = $('only-failed');
  const moreButton = $('run-more');
  const exportButton = $('export');
  const gallery = $('gallery');
  const errorBox = $('error');

  let run = null;      // the run shown
  let next = null;     // offset of its next page, or null
  let total = 0;
  const jobs = new Map(); // id -> the job's record, as the gateway last gave it

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = false;
  }

  async function api(path, options) {
    let response;
    try {
      response = await fetch(path, options);
    } catch (e) {
      throw new Error('cannot reach the gateway: ' + e.message);
    }
    if (!response.ok) {
      let text = 'HTTP ' + response.status;
      try {
        const body = await response.json();
        if (body && body.message) text = body.message + ' (' + body.error + ', HTTP ' + response.status + ')';
      } catch (e) { /* not JSON */ }
      throw new Error(text);
    }
    return response.json();
  }

  // The caption a person approved or wrote, else the model's.
  function altText(job) {
    return (job.review && job.review.caption) || job.caption || '';
  }

  function audioUrl(job) {
    const speech = job.review && job.review.speech_job;
    return '/v1/jobs/' + encodeURIComponent(speech || job.id) + '/audio';
  }

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function updateSummary() {
    const shown = [...jobs.values()];
    const failed = shown.filter((j) => j.state === 'failed').length;
    const approved = shown.filter((j) => j.review && j.review.approved).length;
    summary.textContent = 'Run ' + run + ': ' + shown.length + ' of ' + total + ' images loaded, ' +
      failed + ' failed, ' + approved + ' approved.';
    moreButton.hidden = next === null;
  }

  function applyFilter() {
    for (const li of gallery.children) li.hidden = onlyFailed.checked && li.dataset.state !== 'failed';
  }

  // One card: thumbnail, link to the original, state, caption (editable),
  // audio, approve.
  function renderCard(job) {
    const li = el('li', { class: 'card', 'data-job': job.id, 'data-state': job.state });
    const headingId = 'card-' + job.id;
    const base = '/v1/jobs/' + encodeURIComponent(job.id);
    // The vision worker's JPEG thumbnail (its RESULT says so: vision.thumbnail
    // in the record): any format, a few kilobytes. Else the original.
    const thumb = Object.values(job.stages || {}).some((s) => s && s.thumbnail);
    const img = el('img', { src: base + (thumb ? '/thumbnail' : '/image'), alt: altText(job), loading: 'lazy' });
    if (!thumb) img.dataset.original = '1';
    img.addEventListener('error', () => {
      if (img.dataset.original) {
        // TIFF and HEIC, or a corrupt file: the browser cannot draw them.
        img.replaceWith(el('p', { class: 'no-preview' }, 'No preview: this browser cannot show the file.'));
        return;
      }
      img.dataset.original = '1'; // the thumbnail is gone (retention): the original
      img.src = base + '/image';
    });
    li.append(img);
    const source = job.options && job.options.source;
    li.append(el('h3', { id: headingId }, source || job.id));
    li.append(el('a', { class: 'original', href: base + '/image', target: '_blank', rel: 'noopener',
                        'aria-describedby': headingId }, 'Open the original'));
    li.append(el('p', { class: 'state state-' + job.state }, 'State: ' + job.state));
    if (job.state === 'failed' || job.state === 'cancelled') {
      li.append(el('p', { class: 'card-error' }, (job.error || job.state) + ': ' + (job.error_message || '')));
      return li;
    }
    const caption = el('p', { class: 'caption-text', 'aria-live': 'polite' }, altText(job) || '(no caption yet)');
    li.append(caption);
    if (job.review && job.review.caption && job.review.caption !== job.caption)
      li.append(el('p', { class: 'edited' }, 'Corrected; the model wrote: ' + (job.caption || '')));
    if (job.state === 'done') {
      const audio = el('audio', { controls: '', preload: 'none', src: audioUrl(job),
                                  'aria-label': 'Audio of ' + (source || job.id) });
      li.append(audio);
    }
    const actions = el('div', { class: 'actions' });
    const edit = el('button', { type: 'button', class: 'secondary', 'aria-describedby': headingId }, 'Edit caption');
    const approve = el('button', { type: 'button', 'aria-pressed': job.review && job.review.approved ? 'true' : 'false',
                                   'aria-describedby': headingId },
                       job.review && job.review.approved ? 'Approved' : 'Approve');
    if (job.state !== 'done') edit.disabled = approve.disabled = true;
    actions.append(edit, approve);
    li.append(actions);

    edit.addEventListener('click', () => openEditor(li, job, caption, edit));
    approve.addEventListener('click', async () => {
      const want = approve.getAttribute('aria-pressed') !== 'true';
      approve.disabled = true;
      try {
        await review(job.id, { approved: want });
      } catch (e) {
        showError('Could not approve: ' + e.message);
        approve.disabled = false;
      }
    });
    return li;
  }

  function openEditor(li, job, caption, editButton) {
    if (li.querySelector('textarea')) return;
    const id = 'edit-' + job.id;
    const box = el('div', { class: 'editor' });
    const label = el('label', { for: id }, 'Corrected caption');
    const area = el('textarea', { id: id, rows: '3', maxlength: '2000' });
    area.value = altText(job);
    const save = el('button', { type: 'button' }, 'Save and speak');
    const cancel = el('button', { type: 'button', class: 'secondary' }, 'Cancel');
    box.append(label, area, save, cancel);
    caption.after(box);
    area.focus();
    editButton.disabled = true;
    const close = () => { box.remove(); editButton.disabled = false; editButton.focus(); };
    cancel.addEventListener('click', close);
    save.addEventListener('click', async () => {
      const text = area.value.trim();
      if (!text) { showError('The caption is empty.'); return; }
      save.disabled = true;
      try {
        await review(job.id, { caption: text });
      } catch (e) {
        showError('Could not save the caption: ' + e.message);
        save.disabled = false;
      }
    });
  }

  // POSTs a review and redraws the job's card from the record it returns.
  async function review(id, body) {
    const record = await api('/v1/jobs/' + encodeURIComponent(id) + '/review', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    jobs.set(id, record);
    const old = gallery.querySelector('li[data-job="' + CSS.escape(id) + '"]');
    const card = renderCard(record);
    if (old) old.replaceWith(card);
    card.dataset.reviewed = String(record.review && record.review.ms || '');
    applyFilter();
    updateSummary();
    const focusable = card.querySelector('button[aria-pressed]');
    if (focusable) focusable.focus();
  }

  async function loadPage(offset) {
    const page = await api('/v1/runs/' + encodeURIComponent(run) + '?offset=' + offset);
    total = page.total;
    next = page.next;
    for (const job of page.jobs) {
      jobs.set(job.id, job);
      gallery.append(renderCard(job));
    }
    applyFilter();
    updateSummary();
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    errorBox.hidden = true;
    const id = runInput.value.trim();
    if (!/^[A-Za-z0-9._:-]{1,64}$/.test(id)) {
      showError('A run id is 1 to 64 letters, digits and . _ : -');
      return;
    }
    run = id;
    jobs.clear();
    gallery.replaceChildren();
    tools.hidden = false;
    summary.textContent = 'Loading run ' + run + '…';
    try {
      await loadPage(0);
      history.replaceState(null, '', '#run=' + encodeURIComponent(run));
    } catch (e) {
      summary.textContent = '';
      showError('Could not load run ' + run + ': ' + e.message);
    }
  });

  moreButton.addEventListener('click', async () => {
    if (next === null) return;
    moreButton.disabled = true;
    try {
      await loadPage(next);
    } catch (e) {
      showError('Could not load more: ' + e.message);
    }
    moreButton.disabled = false;
  });

  onlyFailed.addEventListener('change', applyFilter);

  // The approved alt text as JSON Lines: one object per approved image.
  exportButton.addEventListener('click', () => {
    const lines = [...jobs.values()].filter((j) => j.review && j.review.approved).map((j) => JSON.stringify({
      id: j.id, source: (j.options && j.options.source) || null, alt_text: altText(j),
      edited: Boolean(j.review.caption && j.review.caption !== j.caption), model_caption: j.caption || null,
    }));
    if (!lines.length) {
      showError('No image of this run is approved yet: approve some first.');
      return;
    }
    const blob = new Blob([lines.join('\n') + '\n'], { type: 'application/x-ndjson' });
    const a = el('a', { href: URL.createObjectURL(blob), download: 'alt-text-' + run + '.jsonl' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  });

  // A link to #run=ID opens that run.
  const m = /^#run=([A-Za-z0-9._:-]{1,64})$/.exec(decodeURIComponent(location.hash));
  if (m) {
    runInput.value = m[1];
    form.requestSubmit();
  }
})();
