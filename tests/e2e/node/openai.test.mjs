// sluice serve driven by the official OpenAI client (npm "openai").
//   SLUICE_URL=http://127.0.0.1:PORT node --test openai.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const base = process.env.SLUICE_URL;
assert.ok(base, 'SLUICE_URL must be set');
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
const msgs = [{ role: 'user', content: 'Tell me about the kernel.' }];

async function streamText(stream, field) {
  let text = '', finish = null, chunks = 0;
  for await (const c of stream) {
    chunks++;
    const ch = c.choices[0];
    if (!ch) continue;
    text += field === 'chat' ? (ch.delta?.content ?? '') : (ch.text ?? '');
    if (ch.finish_reason) finish = ch.finish_reason;
  }
  return { text, finish, chunks };
}

test('models lists the served model', async () => {
  const models = await client.models.list();
  assert.equal(models.data.length, 1);
  assert.match(models.data[0].id, /tiny-qwen3moe/);
});

test('chat: non-streaming and streaming give the same greedy text', async () => {
  const full = await client.chat.completions.create({ model: 'm', messages: msgs, max_tokens: 24, temperature: 0 });
  const msg = full.choices[0].message;
  assert.equal(msg.role, 'assistant');
  assert.ok(msg.content.length > 0);
  assert.equal(full.choices[0].finish_reason, 'length');
  assert.equal(full.usage.completion_tokens, 24);
  assert.equal(full.usage.total_tokens, full.usage.prompt_tokens + 24);
  const s = await streamText(await client.chat.completions.create({ model: 'm', messages: msgs, max_tokens: 24, temperature: 0, stream: true }), 'chat');
  assert.equal(s.text, msg.content);
  assert.equal(s.finish, 'length');
  assert.ok(s.chunks >= 3);
});

test('completions: non-streaming and streaming agree', async () => {
  const full = await client.completions.create({ model: 'm', prompt: 'The kernel', max_tokens: 20, temperature: 0 });
  assert.equal(full.object, 'text_completion');
  const s = await streamText(await client.completions.create({ model: 'm', prompt: 'The kernel', max_tokens: 20, temperature: 0, stream: true }), 'text');
  assert.equal(s.text, full.choices[0].text);
  assert.equal(full.usage.completion_tokens, 20);
});

test('stop strings cut the text, also when they span tokens', async () => {
  const free = await client.completions.create({ model: 'm', prompt: 'The kernel', max_tokens: 40, temperature: 0 });
  const text = free.choices[0].text;
  assert.ok(text.length > 20, text);
  const stop = text.slice(8, 14);  // six characters from the middle: usually inside or across tokens
  const want = text.slice(0, text.indexOf(stop));
  const cut = await client.completions.create({ model: 'm', prompt: 'The kernel', max_tokens: 40, temperature: 0, stop: [stop] });
  assert.equal(cut.choices[0].text, want);
  assert.equal(cut.choices[0].finish_reason, 'stop');
  const s = await streamText(await client.completions.create({ model: 'm', prompt: 'The kernel', max_tokens: 40, temperature: 0, stop: [stop], stream: true }), 'text');
  assert.equal(s.text, want);
  assert.equal(s.finish, 'stop');
});

test('a seed makes sampling reproducible', async () => {
  const ask = (seed) => client.chat.completions.create({ model: 'm', messages: msgs, max_tokens: 24, temperature: 1.0, seed });
  const [a, b, c] = [await ask(7), await ask(7), await ask(8)];
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
  assert.notEqual(a.choices[0].message.content, c.choices[0].message.content);
});

test('stream usage chunk when asked', async () => {
  const stream = await client.chat.completions.create({ model: 'm', messages: msgs, max_tokens: 5, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let usage = null;
  for await (const c of stream) if (c.usage) usage = c.usage;
  assert.equal(usage.completion_tokens, 5);
});

test('bad requests are 400 with an OpenAI error object', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'm', messages: msgs, n: 2 }),
    (e) => e.status === 400 && /n=1/.test(e.message));
  await assert.rejects(client.chat.completions.create({ model: 'm', messages: [] }),
    (e) => e.status === 400 && e.error?.param === 'messages');
  await assert.rejects(client.chat.completions.create({ model: 'm', messages: msgs, temperature: 'hot' }),
    (e) => e.status === 400);
});

test('a client that disconnects cancels its generation', async () => {
  const metric = async () => {
    const t = await (await fetch(`${base}/metrics`)).text();
    return Number(/^sluice_requests_cancelled_total (\d+)/m.exec(t)[1]);
  };
  const before = await metric();
  const ac = new AbortController();
  const stream = await client.chat.completions.create(
    { model: 'm', messages: msgs, max_tokens: 4000, temperature: 1.0, stream: true }, { signal: ac.signal });
  try {
    for await (const c of stream) { ac.abort(); }
  } catch (e) { /* aborted */ }
  let after = before;
  for (let i = 0; i < 50 && after === before; i++) {
    await new Promise((r) => setTimeout(r, 100));
    after = await metric();
  }
  assert.equal(after, before + 1);
});
