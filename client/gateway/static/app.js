// The narrator web page: upload an image, follow the job through its stages
// (polling GET /v1/jobs/{id}), show the caption and play the audio.
// Plain JavaScript, no build step; talks only to the gateway's /v1 API.
'use strict';

(function () {
  const POLL_FIRST_MS = 300;
  const POLL_MAX_MS = 2000;
  const FINAL = new Set(['done', 'failed', 'cancelled']);

  const $ = (id) => document.getElementById(id);
  const form = $('upload-form');
  const input = $('image');
  const drop = $('drop');
  const jobBox = $('job');
  const statusLine = $('job-status');
  const stagesList = $('stages');
  const captionEl = $('caption');
  const preview = $('preview');
  const previewCaption = $('preview-caption');
  const audio = $('audio');
  const audioLink = $('audio-link');
  const recordLink = $('record-link');
  const errorBox = $('error');
  const submitButton = $('submit');

  let maxBody = 0;     // from /healthz; 0 = unknown
  let pollTimer = null;
  let currentJob = null;
  let previewUrl = null;

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = false;
  }

  function clearError() {
    errorBox.textContent = '';
    errorBox.hidden = true;
  }

  // A gateway error body is {"error": "<wire name>", "message": "..."}.
  async function errorText(response) {
    try {
      const body = await response.json();
      if (body && body.message) return body.message + ' (' + body.error + ', HTTP ' + response.status + ')';
    } catch (e) { /* not JSON */ }
    return 'HTTP ' + response.status + ' ' + response.statusText;
  }

  async function api(path, options) {
    let response;
    try {
      response = await fetch(path, options);
    } catch (e) {
      throw new Error('cannot reach the gateway: ' + e.message);
    }
    if (!response.ok) throw new Error(await errorText(response));
    return response;
  }

  function stageState(record, stage, index) {
    const route = record.route || [];
    const current = route.indexOf(record.stage);
    if (record.state === 'done') return 'done';
    if (index < current) return 'done';
    if (index > current) return 'waiting';
    if (record.state === 'failed') return 'failed';
    if (record.state === 'cancelled') return 'cancelled';
    return record.state === 'running' ? 'running' : 'queued';
  }

  function renderStages(record) {
    stagesList.textContent = '';
    (record.route || []).forEach((stage, index) => {
      const li = document.createElement('li');
      const state = stageState(record, stage, index);
      li.className = 'stage stage-' + state;
      li.dataset.stage = stage;
      li.dataset.state = state;
      const info = record.stages && record.stages[stage];
      let text = stage + ': ' + state;
      if (info && typeof info.ms === 'number') text += ' (' + info.ms + ' ms)';
      li.textContent = text;
      stagesList.appendChild(li);
    });
  }

  function renderRecord(record) {
    let line = 'Job ' + record.id + ': ' + record.state;
    if (!FINAL.has(record.state) && record.stage) line += ' at stage ' + record.stage;
    if (record.state === 'queued' && record.stage_workers === 0)
      line += ' (no worker serves the ' + record.stage + ' stage yet: is narrator-worker-' +
              record.stage + ' running?)';
    if (record.timings && typeof record.timings.total_ms === 'number')
      line += ' in ' + record.timings.total_ms + ' ms';
    statusLine.textContent = line;
    jobBox.dataset.state = record.state;
    renderStages(record);
    if (record.caption) {
      captionEl.textContent = record.caption;
      preview.alt = record.caption;
      previewCaption.textContent = record.caption;
    }
    recordLink.href = '/v1/jobs/' + encodeURIComponent(record.id);
    recordLink.hidden = false;
    if (record.state === 'done' && record.links && record.links.audio) {
      if (audio.dataset.job !== record.id) {
        audio.dataset.job = record.id;
        audio.src = record.links.audio;
        audioLink.href = record.links.audio;
        audioLink.hidden = false;
      }
    }
    if (record.state === 'failed')
      showError('The job failed: ' + (record.error_message || record.error || 'unknown error') +
                (record.error ? ' (' + record.error + ')' : ''));
    if (record.state === 'cancelled') showError('The job was cancelled.');
  }

  function stopPolling() {
    if (pollTimer) clearTimeout(pollTimer);
    pollTimer = null;
  }

  function poll(id, delay) {
    stopPolling();
    pollTimer = setTimeout(async () => {
      if (currentJob !== id) return;
      try {
        const response = await api('/v1/jobs/' + encodeURIComponent(id));
        const record = await response.json();
        if (currentJob !== id) return;
        renderRecord(record);
        if (!FINAL.has(record.state)) poll(id, Math.min(delay * 1.5, POLL_MAX_MS));
      } catch (e) {
        showError(e.message + ' (retrying)');
        poll(id, POLL_MAX_MS);
      }
    }, delay);
  }

  function startJob(job, kind) {
    clearError();
    currentJob = job.id;
    jobBox.hidden = false;
    audio.removeAttribute('src');
    delete audio.dataset.job;
    audio.load();
    audioLink.hidden = true;
    captionEl.textContent = kind === 'speech' ? '(speech only: no caption)' : '(not written yet)';
    renderRecord({id: job.id, state: job.state, stage: job.stage,
                  route: (job.route || '').split(',').filter(Boolean)});
    poll(job.id, POLL_FIRST_MS);
    refreshRecent();
  }

  function showPreview(file) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    preview.src = previewUrl;
    preview.alt = 'The uploaded image (caption not written yet)';
    preview.hidden = false;
    previewCaption.textContent = file.name;
  }

  async function upload(file) {
    clearError();
    if (!file) {
      showError('Pick an image first.');
      input.focus();
      return;
    }
    if (maxBody && file.size > maxBody) {
      showError('The image is ' + file.size + ' bytes; this gateway takes at most ' + maxBody + '.');
      return;
    }
    const data = new FormData();
    data.append('image', file, file.name);
    for (const name of ['voice', 'speed', 'beams', 'max_length', 'prompt', 'language']) {
      const value = $(name).value.trim();
      if (value) data.append(name, value);
    }
    submitButton.disabled = true;
    try {
      const response = await api('/v1/jobs', {method: 'POST', body: data});
      const job = await response.json();
      showPreview(file);
      startJob(job, 'image');
    } catch (e) {
      showError('Upload failed: ' + e.message);
    } finally {
      submitButton.disabled = false;
    }
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    upload(input.files && input.files[0]);
  });

  // Dropping a file anywhere on the box puts it in the file input too, so
  // the keyboard path and the mouse path submit the same way.
  ['dragenter', 'dragover'].forEach((type) => drop.addEventListener(type, (event) => {
    event.preventDefault();
    drop.classList.add('dragging');
  }));
  ['dragleave', 'drop'].forEach((type) => drop.addEventListener(type, () => {
    drop.classList.remove('dragging');
  }));
  drop.addEventListener('drop', (event) => {
    event.preventDefault();
    const files = event.dataTransfer && event.dataTransfer.files;
    if (!files || !files.length) return;
    try {
      input.files = files;
    } catch (e) { /* older browsers: upload directly */ }
    upload(files[0]);
  });
  input.addEventListener('change', () => {
    if (input.files && input.files[0]) showPreview(input.files[0]);
  });

  $('speak-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    clearError();
    const text = $('speak-text').value;
    if (!text.trim()) {
      showError('Write something to speak first.');
      $('speak-text').focus();
      return;
    }
    const params = new URLSearchParams();
    for (const name of ['voice', 'speed']) {
      const value = $(name).value.trim();
      if (value) params.append(name, value);
    }
    const query = params.toString() ? '?' + params.toString() : '';
    try {
      const response = await api('/v1/speak' + query, {
        method: 'POST', headers: {'Content-Type': 'text/plain; charset=utf-8'}, body: text});
      const job = await response.json();
      preview.removeAttribute('src');
      preview.hidden = true;
      previewCaption.textContent = text;
      startJob(job, 'speech');
    } catch (e) {
      showError('Speak failed: ' + e.message);
    }
  });

  async function refreshRecent() {
    const list = $('recent');
    try {
      const response = await api('/v1/jobs');
      const body = await response.json();
      list.textContent = '';
      for (const job of body.jobs || []) {
        const li = document.createElement('li');
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'linkish';
        button.textContent = (job.name || job.route) + ' — ' + job.id;
        button.addEventListener('click', () => {
          preview.removeAttribute('src');
          preview.hidden = true;
          previewCaption.textContent = job.name || '';
          startJob({id: job.id, state: 'queued', route: job.route}, job.route);
        });
        li.appendChild(button);
        list.appendChild(li);
      }
      if (!list.children.length) list.textContent = 'None yet.';
    } catch (e) {
      list.textContent = 'Cannot list recent jobs: ' + e.message;
    }
  }
  $('recent-refresh').addEventListener('click', refreshRecent);

  audio.addEventListener('error', () => {
    if (audio.getAttribute('src')) showError('The audio cannot be played (' +
      (audio.error ? 'media error ' + audio.error.code : 'unknown error') + ').');
  });

  fetch('/healthz').then((r) => r.json()).then((h) => { maxBody = h.max_body_bytes || 0; })
    .catch(() => showError('Cannot reach the gateway.'));

  // The voice list comes from the live speech workers (GET /v1/voices), not
  // from a fixed list; names are set as text, never as HTML.
  async function loadVoices() {
    const select = $('voice');
    try {
      const body = await (await api('/v1/voices')).json();
      const voices = (body.stages && body.stages.speech) || [];
      const chosen = select.value;
      while (select.options.length > 1) select.remove(1);
      for (const name of voices) {
        if (typeof name !== 'string') continue;
        const option = document.createElement('option');
        option.value = name;
        option.textContent = name;
        select.appendChild(option);
      }
      if (voices.includes(chosen)) select.value = chosen;
      $('voice-hint').textContent = voices.length
        ? 'The voices the running speech workers offer.'
        : 'No speech worker is running now; the worker default will be used.';
    } catch (e) {
      $('voice-hint').textContent = 'The voice list is not available: ' + e.message;
    }
  }
  loadVoices();
  refreshRecent();
})();
