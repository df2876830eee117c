-- wrk script for the implicit-refresh row: a pool of refresh tokens, one per
-- session (logins made by run.sh). Each request takes one and sends it as the
-- only cookie; jwtgate rotates and the response's Set-Cookie (refresh last)
-- puts the successor back. A token lost (no rotation) shrinks the pool, and
-- an empty pool sends no cookie: a 401 that fails the run.
local pool = {}

init = function(args)
  for line in io.lines(args[1]) do
    if #line > 0 then pool[#pool + 1] = line end
  end
end

request = function()
  local token = table.remove(pool)
  if token == nil then
    return wrk.format("GET", "/api/x")
  end
  return wrk.format("GET", "/api/x", { ["Cookie"] = "refresh_token_cookie=" .. token })
end

-- Header names arrive as sent (hyper writes them lower-case); wrk keeps the
-- last of repeated headers, which is the refresh cookie here.
response = function(status, headers, body)
  if status ~= 200 then return end
  for name, value in pairs(headers) do
    if name:lower() == "set-cookie" then
      local token = value:match("^refresh_token_cookie=([^;]+)")
      if token ~= nil then pool[#pool + 1] = token end
    end
  end
end
