-- Pandoc filter used by scripts/build_docs.py for the HTML pages and the PDF book.
--
-- * Heading ids the way pandoc's (and so Quarto's) `auto_identifiers` make them, so that nbdev's doc links
--   (`https://host/base/data.html#idmap.index`) land; the notebooks are read as CommonMark, whose own ids would differ.
-- * Links in headings keep their text only (nbdev links backticked names there too; a heading is a link in the
--   table of contents already).
-- * Links to the doc host and between notebooks (`00_data.ipynb#splits`, `data.html#splits`) go to the page in the
--   site (`data.html#splits`, `#splits` on the same page) or to the place in the one-document book (typst); in the
--   book a link to an anchor that does not exist keeps its text only, because typst refuses a link to a missing label
--   (build_docs.py does the same for the site once every page is written).
-- * Book only: HTML tables (pandas DataFrames) are parsed into real tables, other raw HTML is dropped with a
--   count, output blocks are wrapped in typst boxes.
--
-- Metadata from build_docs.py: docs-mode ('html' or 'book'), docs-pages (notebook file -> page name, the pages
-- built), docs-site (the doc host's address, nbdev's link prefix), docs-page (html: the page being written).

local stringify = pandoc.utils.stringify
local mode, pages, built, site, here_page = 'html', {}, {}, '', nil
local dropped_html = 0

local function is_letter(c) return c:match('^%a$') ~= nil or #c > 1 end   -- ASCII letter or any non-ASCII char
local function is_allowed(c) return c:match('^[%w_%-%.]$') ~= nil or #c > 1 end

-- pandoc's inlineListToIdentifier: lower case, keep alphanumerics and _-. , spaces to '-', drop up to the first letter
local function auto_id(text)
  local words, cur, started = {}, {}, false
  for _, cp in utf8.codes(pandoc.text.lower(text)) do
    local c = utf8.char(cp)
    if not started and is_letter(c) then started = true end
    if started then
      if c:match('^%s$') then
        if #cur > 0 then table.insert(words, table.concat(cur)); cur = {} end
      elseif is_allowed(c) then table.insert(cur, c) end
    end
  end
  if #cur > 0 then table.insert(words, table.concat(cur)) end
  local id = table.concat(words, '-')
  if id == '' then id = 'section' end
  return id
end

-- a target `foo.ipynb#x`, `foo.html#x` (relative, no directory) or `<site>/foo.html#x` -> page name, fragment (or nil);
-- a link to the doc host only when that page is built (others stay links to the site)
local function page_target(target)
  local on_site = false
  if site ~= '' and target:sub(1, #site + 1) == site .. '/' then
    target, on_site = target:sub(#site + 2), true
    if target == '' or target:match('^#') then target = 'index.html' .. target end
  end
  if target:match('^%a[%w+.-]*:') or target:match('^/') or target:match('/') then return nil end
  local file, frag = target:match('^([^#]+)(#?.*)$')
  if not file then return nil end
  frag = (frag ~= '' and frag:sub(2)) or nil
  local page = pages[file]
  if not page then
    local stem = file:match('^(.-)%.ipynb$') or file:match('^(.-)%.html$')
    if not stem then return nil end
    page = pandoc.text.lower(stem):gsub('^%d+[%w]*_', '')
  end
  if on_site and not built[page] then return nil end
  return page, frag
end

local function unwrap(link) return link.content end
local function unlink_headers(doc)
  return doc:walk({Header = function(h) h.content = h.content:walk({Link = unwrap}); return h end})
end

function Meta(meta)
  if meta['docs-mode'] then mode = stringify(meta['docs-mode']) end
  if meta['docs-site'] then site = stringify(meta['docs-site']) end
  if meta['docs-page'] then here_page = stringify(meta['docs-page']) end
  if meta['docs-pages'] then
    for k, v in pairs(meta['docs-pages']) do pages[k] = stringify(v); built[stringify(v)] = true end
  end
end

-- ---------------------------------------------------------------- HTML pages
local function html_doc(doc)
  local seen = {}
  doc = doc:walk({Header = function(h)
    if h.identifier == '' then
      local base = auto_id(stringify(h.content)); local id, n = base, 0
      while seen[id] do n = n + 1; id = base .. '-' .. n end
      h.identifier = id
    end
    seen[h.identifier] = true
    return h
  end})
  return doc:walk({Link = function(l)
    local page, frag = page_target(l.target)
    if page == here_page and frag then l.target = '#' .. frag
    elseif page then l.target = page .. '.html' .. (frag and ('#' .. frag) or '') end
    return l
  end})
end

-- ---------------------------------------------------------------- the book
local function book_blocks(blocks)
  -- typst-only changes inside a chapter
  return pandoc.Blocks(blocks):walk({
    RawBlock = function(r)
      if r.format ~= 'html' then return nil end
      if r.text:match('<table') then
        local ok, parsed = pcall(pandoc.read, r.text, 'html')
        if ok then return parsed.blocks end
      end
      dropped_html = dropped_html + 1
      return {}
    end,
    Div = function(d)
      if d.classes:includes('cell-output-display') or d.classes:includes('cell-output-stdout')
         or d.classes:includes('cell-output-stderr') or d.classes:includes('cell-output-error') then
        local kind = d.classes:includes('cell-output-stderr') and 'stderr'
                  or (d.classes:includes('cell-output-error') and 'error' or 'out')
        local out = pandoc.Blocks({pandoc.RawBlock('typst', '#output("' .. kind .. '")[')})
        out:extend(d.content)
        out:insert(pandoc.RawBlock('typst', ']'))
        return out
      end
      if d.classes:includes('cell-output-markdown') then
        local out = pandoc.Blocks({pandoc.RawBlock('typst', '#docblock[')})
        out:extend(d.content)
        out:insert(pandoc.RawBlock('typst', ']'))
        return out
      end
    end,
  })
end

local function book_doc(doc)
  -- pass 1: ids, chapter by chapter (top-level Divs with class `chapter` and attribute `page`)
  local ids, all = {}, {}
  local function claim(id)
    local base, n = id, 0
    while all[id] do n = n + 1; id = base .. '-' .. n end
    all[id] = true
    return id
  end
  local chapter_of = {}
  for i, blk in ipairs(doc.blocks) do
    if blk.t == 'Div' and blk.classes:includes('chapter') then
      local page = blk.attributes['page']
      ids[page] = {}
      local first, unnumbered = true, false
      -- a chapter that numbers its sections in their titles ("1. The formula") keeps its numbers, not typst's as well
      local own_numbers = false
      blk.content:walk({Header = function(h)
        if h.level >= 2 and stringify(h.content):match('^%d+%.%s') then own_numbers = true end
      end})
      -- show_doc headings (inside .cell-output-markdown) are not numbered: they are entries, not sections
      blk.content = blk.content:walk({Div = function(d)
        if d.classes:includes('cell-output-markdown') then
          d.content = d.content:walk({Header = function(h) h.classes:insert('unnumbered'); return h end})
          return d
        end
      end})
      blk.content = blk.content:walk({Header = function(h)
        if unnumbered and not h.classes:includes('unnumbered') then h.classes:insert('unnumbered') end
        if first then
          first = false
          unnumbered = h.classes:includes('unnumbered')
          h.identifier = claim(page)
          ids[page][''] = h.identifier
        else
          if h.level == 1 then h.level = 2 end   -- a chapter holds one level-1 heading, its title
          if own_numbers and not h.classes:includes('unnumbered') then h.classes:insert('unnumbered') end
          -- typst reads "1. " at the start of a heading's text as a numbered list (in the heading and the contents)
          local s = h.content[1]
          if own_numbers and FORMAT:match('typst') and s and s.t == 'Str' and s.text:match('^%d+%.$') then
            h.content[1] = pandoc.RawInline('typst', (s.text:gsub('%.$', '\\.')))
          end
          local local_id = h.identifier ~= '' and h.identifier or auto_id(stringify(h.content))
          local full = claim(page .. '--' .. local_id)
          if not ids[page][local_id] then ids[page][local_id] = full end
          h.identifier = full
        end
        return h
      end})
      chapter_of[i] = page
    end
  end
  -- pass 2: links, then typst-only changes
  for i, blk in ipairs(doc.blocks) do
    local here = chapter_of[i]
    local function resolve(l)
      if l.target:match('^#') then
        local frag = l.target:sub(2)
        if all[frag] then return l end
        local full = here and ids[here] and ids[here][frag]
        if full then l.target = '#' .. full; return l end
        return unwrap(l)
      end
      local page, frag = page_target(l.target)
      if not page then return l end
      if ids[page] then
        local full = ids[page][frag or '']
        if not full then return unwrap(l) end
        l.target = '#' .. full
        return l
      end
      if site ~= '' then l.target = site .. '/' .. page .. '.html' .. (frag and ('#' .. frag) or ''); return l end
      return unwrap(l)
    end
    blk = pandoc.Blocks({blk}):walk({Link = resolve})[1]
    if here then blk.content = book_blocks(blk.content) end
    doc.blocks[i] = blk
  end
  -- a chapter's Div would become a typst block, inside which its title's page break is not allowed: unwrap
  local flat = pandoc.Blocks({})
  for i, blk in ipairs(doc.blocks) do
    if chapter_of[i] then flat:extend(blk.content) else flat:insert(blk) end
  end
  doc.blocks = flat
  if dropped_html > 0 then
    io.stderr:write(string.format('[docs] book: %d raw HTML output(s) without a PDF form were left out\n', dropped_html))
  end
  return doc
end

function Pandoc(doc)
  Meta(doc.meta)
  doc = unlink_headers(doc)
  if mode == 'book' then return book_doc(doc) end
  return html_doc(doc)
end
